"""Building the demo corpus into a folder, and reading a built one back (see the package docstring for what it
holds). Files written into ``root``::

    audio/<kind>/<style>/<piece>-<k>.wav    the clips, 22.05 kHz mono 16-bit
    midi/<kind>/<style>/<piece>-<k>.mid     the MIDI file each clip was rendered from
    demo_clips.csv                          one row per clip: labels, split and how it was made
    demo_labels.csv                         clips and audio hours per label value and split
    demo_corpus.json                        build options, counts, audio hours, build time; written last
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import random
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from m3bert.adapters.base import SPLITS, TAG_SEPARATOR, DatasetLayoutError, Track, check_unique
from m3bert.adapters.demo.scores import Outcome, score_job
from m3bert.adapters.demo.sources import STYLES, Piece, corpus_dir, pieces
from m3bert.adapters.demo.synth import SOUNDFONT_NAME, Renderer, SynthUnavailable, default_soundfont
from m3bert.adapters.splits import DEFAULT_FRACTIONS, check_fractions

log = logging.getLogger(__name__)

BUILD_VERSION = 1  # bump when the recipe changes what is built: a corpus cached by another version is refused
SAMPLE_RATE = 22050  # Hz; the prepare step resamples to the features' rate
PEAK = 0.8  # every clip is scaled to this peak amplitude, as mastered recordings roughly are
MIN_SECONDS = 11.0  # the prepare step drops clips shorter than its clip.min_seconds (10 s by default)
MAX_CLIPS_PER_PIECE = 6
SUMMARY, CLIPS, LABELS = "demo_corpus.json", "demo_clips.csv", "demo_labels.csv"


@dataclass(frozen=True)
class Size:
    """How much to build: ``pieces`` per style (fewer where the corpus has fewer), ``clips`` per piece (more for a
    style with few pieces, up to MAX_CLIPS_PER_PIECE), clips of at most ``max_seconds``, from the pieces whose score
    file is among the smallest ``file_quantile`` of their style (parsing time grows with the file, and the largest
    files, whole string quartets and long mass movements, would dominate the build time)."""

    pieces: int
    clips: int
    max_seconds: float
    file_quantile: float


SIZES = {
    "demo_small": Size(pieces=3, clips=1, max_seconds=13.0, file_quantile=0.25),  # tests: 21 clips, 4 min
    "demo": Size(pieces=36, clips=2, max_seconds=30.0, file_quantile=0.75),  # pre-training: 521 clips, 3.3 h
}


def require_demo_extra() -> None:
    """Building the corpus needs the ``demo`` extra; say how to get it rather than fail on an import deep inside."""
    import importlib.util

    missing = [name for name in ("music21", "fluidsynth", "pretty_midi") if importlib.util.find_spec(name) is None]
    if missing:
        raise SynthUnavailable(
            f"building the demo corpus needs {', '.join(missing)}: pip install 'm3bert[demo]' "
            "(and the FluidSynth library: apt-get install libfluidsynth3 / brew install fluid-synth)"
        )


def tracks(
    root: str | Path,
    size: str = "demo_small",
    seed: int = 0,
    styles: Sequence[str] | None = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    workers: int = 0,
    soundfont: str | Path | None = None,
    progress: bool = True,
) -> list[Track]:
    """The demo corpus's clips, sorted by track id, built into ``root`` first unless a complete build with the same
    options is there already.

    size: ``"demo_small"`` or ``"demo"`` (see SIZES); seed: draws the pieces, excerpts, tempi, transpositions,
    instruments and the split; styles: a subset of the style classes (default all); fractions: train/valid/test
    shares of each style's works (each split gets at least one work of every style); workers: processes that parse
    scores (0: in this process; they are spawned, so a script calling this needs an ``if __name__ == "__main__"``
    guard); soundfont: a General MIDI .sf2 file instead of the one inside pretty_midi.
    """
    root = Path(root)
    if size not in SIZES:
        raise ValueError(f"demo corpus size must be one of {sorted(SIZES)}, got {size!r}")
    chosen = sorted(STYLES) if styles is None else sorted(dict.fromkeys(str(s) for s in styles))
    unknown = [s for s in chosen if s not in STYLES]
    if unknown:
        raise ValueError(f"unknown demo style(s) {unknown}; choose from {sorted(STYLES)}")
    font = Path(soundfont) if soundfont is not None else None
    options = {
        "version": BUILD_VERSION,
        "size": size,
        "seed": int(seed),
        "styles": chosen,
        "fractions": list(check_fractions(fractions)),
        "sample_rate": SAMPLE_RATE,
        "soundfont": font.name if font is not None else SOUNDFONT_NAME,
    }
    cached = read_built(root, options)
    if cached is None:
        require_demo_extra()
        build(root, options, SIZES[size], font or default_soundfont(), workers, progress)
        cached = read_built(root, options)
    return cached


def read_built(root: Path, options: dict) -> list[Track] | None:
    """The tracks of a complete build in ``root`` with these options; None if there is none (or files of it are
    missing, so it must be built again); a DatasetLayoutError if ``root`` holds a build with other options."""
    summary_path = root / SUMMARY
    if not summary_path.is_file():
        return None
    built = json.loads(summary_path.read_text(encoding="utf-8")).get("options")
    if built != options:
        raise DatasetLayoutError(
            f"{summary_path}: this folder holds a demo corpus built with options {built}, not "
            f"{options}; delete the folder to rebuild it, or choose another root"
        )
    if not (root / CLIPS).is_file():
        log.warning("%s: %s is missing; building the demo corpus again", root, CLIPS)
        return None
    table = pd.read_csv(root / CLIPS, dtype=str, keep_default_na=False)
    missing = [p for p in table["audio"] if not (root / p).is_file()]
    if missing:
        log.warning(
            "%s: %d of the demo corpus's audio files are missing (first: %s); building it again",
            root,
            len(missing),
            missing[0],
        )
        return None
    out = []
    for row in table.to_dict("records"):
        # Ensemble clips carry instrument=None rather than no key, so every clip has every label column (the
        # prepare step takes a split manifest's columns from its first row).
        labels = {
            "style": row["style"],
            "meter": row["meter"],
            "tempo": float(row["tempo"]),
            "register": float(row["register"]),
            "tags": row["tags"],
            "instrument": row["instrument"] or None,
        }
        out.append(Track(row["track_id"], root / row["audio"], row["split"], labels))
    return check_unique(sorted(out, key=lambda t: t.track_id), root)


def build(root: Path, options: dict, size: Size, soundfont: Path, workers: int, progress: bool) -> None:
    started = time.perf_counter()
    renderer = Renderer(soundfont, SAMPLE_RATE)  # before the long parse: a missing FluidSynth fails at once
    try:
        corpus = corpus_dir()
        order, clips_per_piece = {}, {}
        for style in options["styles"]:
            candidates = smallest(pieces(style, corpus), size.file_quantile)
            order[style] = spread_over_works(candidates, f"{options['seed']}/order/{style}")
            # A style with fewer pieces than asked for gives more clips of each, so styles keep similar counts.
            clips_per_piece[style] = max(
                size.clips, min(MAX_CLIPS_PER_PIECE, math.ceil(size.clips * size.pieces / max(1, len(candidates))))
            )
        chosen, rejected = score_pieces(order, clips_per_piece, size, corpus, options["seed"], workers, progress)
        splits = split_by_work(
            {s: [o.piece.work for o in outcomes] for s, outcomes in chosen.items()},
            options["fractions"],
            options["seed"],
        )
        rows = render(
            root, [c for outcomes in chosen.values() for o in outcomes for c in o.clips], splits, renderer, progress
        )
    finally:
        renderer.close()
    write_outputs(root, rows, options, chosen, rejected, soundfont, time.perf_counter() - started)


def smallest(candidates: list[Piece], quantile: float) -> list[Piece]:
    """The pieces whose file is no larger than the ``quantile`` of their files' sizes (tunes of a multi-tune file
    share its size, so they are all kept)."""
    if not candidates or candidates[0].number is not None:
        return candidates
    limit = float(np.quantile([p.file_bytes for p in candidates], quantile))
    return [p for p in candidates if p.file_bytes <= limit]


def spread_over_works(candidates: list[Piece], seed: str) -> list[Piece]:
    """The candidates in the order they are tried: works shuffled, then one piece of each work in turn, so a style's
    first pieces come from as many different works as possible."""
    rng = random.Random(seed)
    works: dict[str, list[Piece]] = defaultdict(list)
    for piece in sorted(candidates, key=lambda p: (p.source, p.number or 0)):
        works[piece.work].append(piece)
    names = sorted(works)
    rng.shuffle(names)
    for name in names:
        rng.shuffle(works[name])
    rounds = max((len(w) for w in works.values()), default=0)
    return [works[n][r] for r in range(rounds) for n in names if r < len(works[n])]


def score_pieces(
    order: dict[str, list[Piece]],
    clips_per_piece: dict[str, int],
    size: Size,
    corpus: Path,
    seed: int,
    workers: int,
    progress: bool,
) -> tuple[dict[str, list[Outcome]], Counter]:
    """The first ``size.pieces`` pieces of each style (in ``order``) that give clips, and why others gave none.

    Pieces are parsed in batches a little larger than what each style still needs; which pieces are chosen depends
    only on the order and on each piece's own outcome, not on batches or workers."""
    from tqdm import tqdm

    chosen: dict[str, list[Outcome]] = {style: [] for style in order}
    rejected: Counter = Counter()
    tried = {style: 0 for style in order}
    pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 0 else None
    bar = tqdm(total=0, desc="demo corpus: scores", unit="piece", disable=not progress, dynamic_ncols=True)
    try:
        while True:
            batch = []
            for style, candidates in order.items():
                need = size.pieces - len(chosen[style])
                if need > 0:
                    batch += candidates[tried[style] : tried[style] + need + need // 4 + 1]
                    tried[style] = min(len(candidates), tried[style] + need + need // 4 + 1)
            if not batch:
                break
            bar.total += len(batch)
            bar.refresh()
            jobs = [(p, corpus, clips_per_piece[p.style], seed, MIN_SECONDS, size.max_seconds) for p in batch]
            for outcome in pool.imap(score_job, jobs) if pool else map(score_job, jobs):
                bar.update()
                if outcome.rejected is not None:
                    rejected[outcome.rejected] += 1
                elif len(chosen[outcome.piece.style]) < size.pieces:
                    chosen[outcome.piece.style].append(outcome)
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()  # every result has been read by now, unless an error is ending the build
            pool.join()
    for style, outcomes in chosen.items():
        if len(outcomes) < size.pieces:
            log.warning("demo style %s: only %d of %d pieces give clips", style, len(outcomes), size.pieces)
    return chosen, rejected


def split_by_work(works: dict[str, list[str]], fractions: Sequence[float], seed: int) -> dict[str, str]:
    """work -> split, drawn per style so every split gets its share of each style's works (at least one, for a
    split with a non-zero fraction); no work is in two splits."""
    _, valid_share, test_share = check_fractions(fractions)
    out = {}
    for style in sorted(works):
        names = sorted(set(works[style]))
        if len(names) < 3:
            raise ValueError(
                f"demo style {style}: only {len(names)} work(s) ({names}); a train/valid/test split "
                "by work needs at least 3"
            )
        random.Random(f"{seed}/split/{style}").shuffle(names)
        test = max(1, round(len(names) * test_share)) if test_share > 0 else 0
        valid = max(1, round(len(names) * valid_share)) if valid_share > 0 else 0
        for i, name in enumerate(names):
            out[name] = "test" if i < test else "valid" if i < test + valid else "train"
    return out


def render(root: Path, clips: list, splits: dict[str, str], renderer: Renderer, progress: bool) -> list[dict]:
    """Writes each clip's MIDI and audio file (atomically); returns the rows of demo_clips.csv."""
    import soundfile as sf
    from tqdm import tqdm

    from m3bert.common.files import atomic_write

    rows = []
    for clip in tqdm(
        sorted(clips, key=lambda c: c.track_id),
        desc="demo corpus: render",
        unit="clip",
        disable=not progress,
        dynamic_ncols=True,
    ):
        midi_path, audio_path = f"midi/{clip.track_id}.mid", f"audio/{clip.track_id}.wav"
        atomic_write(root / midi_path, lambda handle, midi=clip.midi: handle.write(midi))
        audio = renderer.render(clip.midi, clip.seconds)
        peak = float(np.abs(audio).max(initial=0.0))
        if peak == 0.0:  # a clip has at least MIN_NOTES notes, so silence means the soundfont lacks the program
            raise RuntimeError(
                f"{clip.track_id}: rendered silent (programs {clip.facts['programs']}); does the "
                "soundfont have every General MIDI program?"
            )
        audio = (audio * (PEAK / peak)).astype(np.float32)
        atomic_write(
            root / audio_path,
            lambda handle, samples=audio: sf.write(
                handle, samples, renderer.sample_rate, format="WAV", subtype="PCM_16"
            ),
        )
        rows.append(
            {
                "track_id": clip.track_id,
                "split": splits[clip.facts["work"]],
                **{k: v for k, v in clip.facts.items() if k != "track_id"},
                "audio": audio_path,
                "midi": midi_path,
            }
        )
    return rows


def write_outputs(
    root: Path,
    rows: list[dict],
    options: dict,
    chosen: dict[str, list[Outcome]],
    rejected: Counter,
    soundfont: Path,
    seconds: float,
) -> None:
    import music21

    from m3bert.common.files import write_csv, write_json

    table = pd.DataFrame(rows)
    write_csv(table, root / CLIPS)
    counts = label_counts(table)
    write_csv(counts, root / LABELS)
    hours = table.groupby("split")["seconds"].sum() / 3600
    summary = {
        "options": options,
        "clips": len(table),
        "audio_hours": round(float(table["seconds"].sum()) / 3600, 4),
        "build_seconds": round(seconds, 1),
        "splits": {
            s: {
                "clips": int((table["split"] == s).sum()),
                "audio_hours": round(float(hours.get(s, 0.0)), 4),
                "works": int(table.loc[table["split"] == s, "work"].nunique()),
            }
            for s in SPLITS
        },
        "labels": {
            label: {str(k): int(v) for k, v in group.groupby("value")["clips"].sum().items()}
            for label, group in counts.groupby("label")
        },
        "tempo_bpm": describe(table["tempo"]),
        "register_midi_pitch": describe(table["register"]),
        "pieces": {style: len(outcomes) for style, outcomes in chosen.items()},
        "pieces_rejected": dict(sorted(rejected.items())),
        "clips_skipped": dict(
            sorted(Counter(r for outcomes in chosen.values() for o in outcomes for r in o.skipped).items())
        ),
        "sample_rate": SAMPLE_RATE,
        "soundfont": str(soundfont),
        "music21": music21.__version__,
    }
    write_json(summary, root / SUMMARY)  # last: its presence marks a complete build
    log.info(
        "demo corpus (%s): %d clips, %.2f h of audio, built in %.0f s in %s",
        options["size"],
        len(table),
        summary["audio_hours"],
        seconds,
        root,
    )


def label_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Clips and audio hours per (label, value, split), tags counted one by one."""
    long = []
    for label in ("style", "meter", "instrument", "tags", "kind", "ensemble"):
        values = table[label].dropna().astype(str)
        if label == "tags":
            values = values.str.split(TAG_SEPARATOR).explode()
        part = table.loc[values.index, ["split", "seconds"]].assign(label=label, value=values.to_numpy())
        long.append(part)
    merged = pd.concat(long)
    grouped = merged.groupby(["label", "value", "split"])["seconds"].agg(["count", "sum"]).reset_index()
    grouped = grouped.rename(columns={"count": "clips", "sum": "audio_hours"})
    grouped["audio_hours"] = (grouped["audio_hours"] / 3600).round(4)
    return grouped


def describe(values: pd.Series) -> dict:
    values = values.astype(float)
    return {
        "min": round(float(values.min()), 2),
        "mean": round(float(values.mean()), 2),
        "max": round(float(values.max()), 2),
    }
