"""``python -m m3bert.bench [--out DIR] [--only NAME ...]``: run the benchmarks and write one json each."""

from __future__ import annotations

import argparse
import json
import platform
from datetime import datetime, timezone
from pathlib import Path

import torch

from m3bert.checkpoint import write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="bench-results", help="folder for the result files")
    parser.add_argument("--only", nargs="*", default=None, help="pretrain, features and/or extract (default: all)")
    args = parser.parse_args()
    out = Path(args.out)
    wanted = set(args.only or ["pretrain", "features", "extract"])
    machine = {"platform": platform.platform(), "torch": torch.__version__, "cuda": torch.cuda.is_available(),
               "when": datetime.now(timezone.utc).isoformat(timespec="seconds")}

    if "pretrain" in wanted:
        from m3bert.bench import pretrain

        result = {"machine": machine, "cpu": pretrain.compare_cpu()}
        if torch.cuda.is_available():
            result["cuda"] = pretrain.gpu()
        write_json(result, out / "pretrain.json")
        print(json.dumps(result, indent=2))
    if "features" in wanted:
        from m3bert.bench import features

        result = {"machine": machine, "cpu": features.run("cpu")}
        if torch.cuda.is_available():
            result["cuda"] = features.run("cuda")
        write_json(result, out / "features.json")
        print(json.dumps(result, indent=2))
    if "extract" in wanted:
        from m3bert.bench import extract

        result = {"machine": machine, "cpu": extract.run("cpu")}
        if torch.cuda.is_available():
            result["cuda"] = extract.run("cuda")
            result["cuda_bf16"] = extract.run("cuda", dtype="bfloat16")
        write_json(result, out / "extract.json")
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
