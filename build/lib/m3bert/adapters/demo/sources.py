"""Where the demo corpus's music comes from: the pieces of the music21 corpus in each style, grouped into works.

A *piece* is what gets parsed (a file, or one tune of a multi-tune ABC file); a *work* is the composition it belongs
to (a Palestrina mass, a string quartet, a Bach cantata), which the train/valid/test split never separates, so no
movement of a work can teach a model what another movement of it sounds like in the test split.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Piece:
    style: str
    source: str  # path relative to the music21 corpus folder
    number: int | None  # the tune's X: number in a multi-tune ABC file, else None
    work: str  # e.g. "palestrina_mass/mass42"
    name: str  # unique within its style and safe in a track id, e.g. "Credo_42_a"
    file_bytes: int  # size of the source file: parsing time grows with it


# Style label -> (corpus folders, file pattern). Collections left out: Josquin (8 pieces, parsed as one voice),
# O'Neill's and Aird's tunes (the same Irish/Scottish fiddle repertoire as Ryan's Mammoth), and the single pieces of
# other composers (too few for a class).
STYLES = {
    "bach_chorale": (("bach",), "*.mxl"),
    "palestrina_mass": (("palestrina",), "*.krn"),
    "monteverdi_madrigal": (("monteverdi",), "madrigal.*.mxl"),
    "trecento": (("trecento",), "*.xml"),
    "classical_quartet": (("beethoven", "haydn", "mozart"), "**/*.mxl"),
    "fiddle_tune": (("ryansMammoth",), "*.abc"),  # Ryan's Mammoth Collection (1883)
    "essen_folksong": (("essenFolksong",), "*.abc"),  # German-language songs of the Essen collection
}
# Essen files that are not German-language folk songs: test files, variants, Irish tunes, Haydn's folk-song uses.
ESSEN_LEFT_OUT = ("test", "variant", "irl", "folkHaydn")
NOT_QUARTETS = ("mozart/k545",)  # a piano sonata
SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def corpus_dir() -> Path:
    """The corpus folder inside the installed music21 package."""
    import music21

    folder = Path(music21.__file__).parent / "corpus"
    if not (folder / "bach").is_dir():
        raise FileNotFoundError(
            f"{folder}: music21's corpus is missing; the demo corpus is built from it "
            "(`pip install music21`, which ships it)"
        )
    return folder


def pieces(style: str, corpus: Path) -> list[Piece]:
    """Every piece of ``style`` in the corpus, sorted by source."""
    if style not in STYLES:
        raise ValueError(f"unknown demo style {style!r}; choose from {sorted(STYLES)}")
    folders, pattern = STYLES[style]
    files = sorted(p for folder in folders for p in (corpus / folder).glob(pattern) if p.is_file())
    out = []
    for path in files:
        source = path.relative_to(corpus).as_posix()
        file_bytes = path.stat().st_size
        if style == "essen_folksong":
            if path.stem.startswith(ESSEN_LEFT_OUT):
                continue
            out += [
                Piece(style, source, n, f"{style}/{path.stem}-{n}", f"{path.stem}-{n}", file_bytes)
                for n in tune_numbers(path)
            ]
        elif style == "classical_quartet":
            if any(source.startswith(prefix) for prefix in NOT_QUARTETS):
                continue
            # composer/opus/movementN.mxl, or composer/opus.mxl holding the whole quartet
            quartet = "-".join(Path(source).parts[:2]).removesuffix(".mxl")
            out.append(Piece(style, source, None, f"{style}/{quartet}", slug(Path(source).with_suffix("")), file_bytes))
        elif style == "monteverdi_madrigal" and path.stem.endswith("_old"):
            continue  # an older encoding of a madrigal that is also there
        else:
            out.append(Piece(style, source, None, f"{style}/{work_of(style, path.stem)}", slug(path.stem), file_bytes))
    return out


def work_of(style: str, stem: str) -> str:
    """The work a file belongs to, from its name: Bach chorales by BWV number (``bwv248.12-2`` -> ``bwv248``, the
    Christmas Oratorio), Palestrina movements by mass number (``Credo_42_a`` -> ``mass42``; the few unnumbered files
    form one work, as their mass isn't known), anything else is a work of its own."""
    if style == "bach_chorale" and (match := re.match(r"bwv(\d+)", stem)):
        return f"bwv{match.group(1)}"
    if style == "palestrina_mass":
        match = re.search(r"_(\d+)", stem)
        return f"mass{match.group(1)}" if match else "mass_unnumbered"
    return slug(stem)


def tune_numbers(path: Path) -> list[int]:
    """The X: reference numbers of the tunes in an ABC file."""
    text = path.read_text(encoding="latin-1")
    return [int(n) for n in re.findall(r"^X:\s*(\d+)", text, flags=re.MULTILINE)]


def slug(name) -> str:
    return SAFE.sub("_", str(name).replace("/", "-")).strip("_")
