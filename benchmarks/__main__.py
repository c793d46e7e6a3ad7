"""``python -m benchmarks [--out DIR] [--only NAME ...]``: run the benchmarks and write one json each."""

from __future__ import annotations

import argparse
import json
import platform
from datetime import datetime, timezone
from pathlib import Path

import torch

from m3bert.common.devices import native_bf16
from m3bert.common.errors import reports_errors
from m3bert.common.files import write_json


def _pretrain(cuda: bool) -> dict:
    from benchmarks import pretrain

    return {"cpu": pretrain.compare_cpu(), **({"cuda": pretrain.gpu()} if cuda else {})}


def _features(cuda: bool) -> dict:
    from benchmarks import features

    return {"cpu": features.run("cpu"), **({"cuda": features.run("cuda")} if cuda else {})}


def _extract(cuda: bool) -> dict:
    from benchmarks import embeddings as extract

    gpu = {"cuda": extract.run("cuda"), "cuda_bf16": extract.run("cuda", dtype="bfloat16")} if cuda else {}
    # bf16 on the CPU only where it is native (what extract's dtype=auto picks); emulated it is slower than fp32.
    cpu_bf16 = {"cpu_bf16": extract.run("cpu", dtype="bfloat16")} if native_bf16("cpu") else {}
    return {"cpu": extract.run("cpu"), **cpu_bf16, **gpu}


def _objectives(cuda: bool) -> dict:
    from benchmarks import objectives

    return {"cpu": objectives.run("cpu"), **({"cuda": objectives.run("cuda")} if cuda else {})}


def _loader(cuda: bool) -> dict:
    from benchmarks import loader

    return {"cpu": loader.run()}


# name -> benchmark(cuda available) -> results by device; each writes bench-results/<name>.json
BENCHMARKS = {
    "pretrain": _pretrain,
    "objectives": _objectives,
    "features": _features,
    "extract": _extract,
    "loader": _loader,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="bench-results", help="folder for the result files")
    parser.add_argument("--only", nargs="*", default=None, help=f"any of {', '.join(BENCHMARKS)} (default: all)")
    args = parser.parse_args()
    out = Path(args.out)
    wanted = set(args.only or BENCHMARKS)
    machine = {
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }

    for name in BENCHMARKS:
        if name not in wanted:
            continue
        result = {"machine": machine, **BENCHMARKS[name](torch.cuda.is_available())}
        write_json(result, out / f"{name}.json")
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    reports_errors(main)()
