"""Benchmark: embedding extraction speed, audio in, every layer's hidden states out.

    python -m benchmarks.embeddings --device cpu --seconds 30

Times :class:`m3bert.inference.representations.Representations` on ``n_clips`` clips of ``seconds`` s of synthetic
music at 44.1 kHz for the paper's small (3 x 768) and base (12 x 768) encoders (random weights: speed doesn't depend
on them), m3bert324 features, windows of 512 frames with a quarter overlap. The real-time factor (RTF) is seconds of
audio per second of wall time, so higher is faster; ``features_s`` / ``encoder_s`` split the time between the front
end and the encoder. As in ``benchmarks.features``, each timed pass starts without cached CQT kernels (every new
file has its own tuning estimate, hence its own kernels). Prints a JSON dict.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from benchmarks.synth import synthetic_music
from m3bert.common.tables import rounded
from m3bert.inference.pretrained import FrontEnd
from m3bert.inference.representations import Representations
from m3bert.models import M3BERT, M3BERTConfig

# conf/model/m3bert_{small,base}.yaml, and a tiny one for tests.
SIZES = {
    "small": dict(hidden_size=768, num_layers=3, num_heads=12, ffn_size=3072),
    "base": dict(hidden_size=768, num_layers=12, num_heads=12, ffn_size=3072),
    "tiny": dict(hidden_size=32, num_layers=2, num_heads=4, ffn_size=64),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_time(fn, repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _time_model(rep: Representations, clips: list, audio_s: float, repeats: int) -> dict:
    rep(clips, sample_rate=44100)  # warm-up: first-call allocations, CUDA kernels
    features = rep.features(clips)
    cqt = getattr(rep.extractor, "cqt", None)

    def fresh(fn):
        # Every new file has its own tuning, hence its own CQT kernel bank: building it is part of the cost.
        def timed():
            if cqt is not None:
                cqt._banks.clear()
            return fn()

        return timed

    total = _median_time(fresh(lambda: rep(clips, sample_rate=44100)), repeats, rep.device)
    front = _median_time(fresh(lambda: rep.features(clips)), repeats, rep.device)
    encode = _median_time(lambda: rep.encode(features), repeats, rep.device)
    return {
        "parameters": sum(p.numel() for p in rep.encoder.parameters()),
        "total_s": rounded(total),
        "rtf": rounded(audio_s / total),
        "features_s": rounded(front),
        "encoder_s": rounded(encode),
        "encoder_rtf": rounded(audio_s / encode),
    }


def run(
    device: str = "cpu",
    seconds: float = 30.0,
    n_clips: int = 2,
    sizes: tuple[str, ...] = ("small", "base"),
    dtype: str = "float32",
    batch_size: int = 8,
    repeats: int = 2,
    threads: int | None = None,
    feature_set: str = "m3bert324",
) -> dict:
    """Time extraction per model size.

    Args:
        device: "cpu" or "cuda". dtype: the encoder's compute dtype. batch_size: windows per encoder pass.
        repeats: timed passes per measurement; the median is reported (after one warm-up pass).
        threads: torch intra-op threads (None keeps torch's default). feature_set: the front end.
    Returns:
        {"device", "clip_seconds", "n_clips", "torch_threads", "models": {size: {total_s, rtf, features_s,
        encoder_s, encoder_rtf, parameters}}}.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    clips = [synthetic_music(seconds, 44100, seed=i) for i in range(n_clips)]
    audio_s = seconds * n_clips
    front_end = FrontEnd(feature_set)
    result = {
        "device": str(dev),
        "clip_seconds": seconds,
        "n_clips": n_clips,
        "dtype": dtype,
        "features": feature_set,
        "torch_threads": torch.get_num_threads(),
        "window_frames": 512,
        "overlap_frames": 128,
        "models": {},
    }
    for size in sizes:
        torch.manual_seed(0)
        encoder = M3BERT(M3BERTConfig(input_dim=front_end.feature_dim, dropout=0.0, **SIZES[size]))
        rep = Representations(
            encoder, front_end, window_frames=512, overlap_frames=128, batch_size=batch_size, device=dev, dtype=dtype
        )
        result["models"][size] = _time_model(rep, clips, audio_s, repeats)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--n-clips", type=int, default=2)
    p.add_argument("--sizes", nargs="+", default=["small", "base"], choices=sorted(SIZES))
    p.add_argument("--dtype", default="float32")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--feature-set", default="m3bert324")
    a = p.parse_args()
    print(
        json.dumps(
            run(
                a.device,
                a.seconds,
                a.n_clips,
                tuple(a.sizes),
                a.dtype,
                a.batch_size,
                a.repeats,
                a.threads,
                a.feature_set,
            ),
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
