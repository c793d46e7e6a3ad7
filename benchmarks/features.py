"""Benchmark: torch feature extraction (batched) vs the librosa reference on the same clips.

    python -m benchmarks.features --device cpu --seconds 30 --n-clips 8 --threads 1

Prints a JSON dict. The real-time factor (RTF) is seconds of audio processed per second of wall time, so
higher is faster. Each timed torch pass starts with an empty kernel-bank cache, so building the per-tuning
CQT kernels is included, as is librosa's (uncached) basis construction on its side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings

import numpy as np
import torch

from benchmarks.reference import reference_features
from benchmarks.synth import synthetic_music
from m3bert.common.tables import rounded
from m3bert.features import build_feature_extractor


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(
    device: str = "cpu",
    seconds: float = 30.0,
    n_clips: int = 8,
    feature_set: str = "m3bert324",
    repeats: int = 3,
    threads: int | None = None,
    librosa: bool = True,
) -> dict:
    """Time both implementations on ``n_clips`` synthetic clips of ``seconds`` s at 44.1 kHz.

    Args:
        device: torch device for the torch extractor ("cpu", "cuda").
        repeats: torch passes; the median is reported (librosa runs once, it is the slow side).
        threads: torch intra-op threads (None keeps torch's default).
        librosa: also time the librosa reference (slow; off for a quick torch-only number).
    Returns:
        dict with wall times (s), real-time factors and ``speedup`` = torch RTF / librosa RTF.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    fx = build_feature_extractor(feature_set).to(dev)
    clips = [synthetic_music(seconds, fx.sample_rate, seed=i) for i in range(n_clips)]
    batch = torch.from_numpy(np.stack(clips)).to(dev)
    audio_s = seconds * n_clips

    # Warm-up on other audio: first-call allocations (and CUDA kernels) are not what we measure.
    with torch.inference_mode():
        fx(torch.from_numpy(synthetic_music(3.0, fx.sample_rate, seed=1234)).to(dev)[None])
    cqt = getattr(fx, "cqt", None)

    def timed(fn) -> float:
        if cqt is not None:
            cqt._banks.clear()
        _sync(dev)
        t = time.perf_counter()
        with torch.inference_mode():
            fn()
        _sync(dev)
        return time.perf_counter() - t

    batched = statistics.median(timed(lambda: fx(batch)) for _ in range(repeats))
    one_by_one = timed(lambda: [fx(batch[i : i + 1]) for i in range(n_clips)])
    out = {
        "device": str(dev),
        "feature_set": feature_set,
        "torch_threads": torch.get_num_threads(),
        "n_clips": n_clips,
        "clip_seconds": seconds,
        "torch_batched_s": rounded(batched),
        "torch_batched_rtf": rounded(audio_s / batched),
        "torch_one_by_one_s": rounded(one_by_one),
        "torch_one_by_one_rtf": rounded(audio_s / one_by_one),
    }
    if librosa:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # librosa warns about its FFT size on the short warm-up clip
            reference_features(synthetic_music(3.0, fx.sample_rate, seed=1234), feature_set)  # numba JIT, imports
            t = time.perf_counter()
            for clip in clips:
                reference_features(clip, feature_set)
            ref_s = time.perf_counter() - t
        out.update(
            librosa_s=rounded(ref_s),
            librosa_rtf=rounded(audio_s / ref_s),
            speedup=rounded(ref_s / batched),
            speedup_one_by_one=rounded(ref_s / one_by_one),
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--n-clips", type=int, default=8)
    p.add_argument("--feature-set", default="m3bert324")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-librosa", action="store_true", help="time only the torch extractor")
    a = p.parse_args()
    res = run(a.device, a.seconds, a.n_clips, a.feature_set, a.repeats, a.threads, librosa=not a.no_librosa)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
