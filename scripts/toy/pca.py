"""The toy world's figures for docs/toyworld.md, "Where enhanced embeddings live" (CPU, about a minute):

    python scripts/toy/pca.py [--prompts 1024]

`dice inspect --pca` with the shipped reference enhancer (`--enhancer toy`) on the held-out-pair prompts (Table 1's
prompts), through dicecli's own function; writes scripts/toy/results/pca-cpu-2026-12-02.json (the numbers) and
docs/toyworld-pca.png (the scatter and the cumulative shares). write_report.py reads the JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
from pathlib import Path

import torch

from dicecli.analysis.embeddings import inspect_enhancer
from dicecli.plugins.toy.world import evaluation_set
from dicecli.runtime import Runtime
from dicecli.settings import SampleOptions

ROOT = Path(__file__).resolve().parents[2]
RESULT = ROOT / "scripts" / "toy" / "results" / "pca-cpu-2026-12-02.json"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=1024)
    args = parser.parse_args()
    prompts, _ = evaluation_set("held_out_pairs", args.prompts)
    with tempfile.TemporaryDirectory() as folder:
        listed = Path(folder) / "held-out.txt"
        listed.write_text("".join(p + "\n" for p in prompts))
        report = inspect_enhancer(str(listed), Path(folder) / "toy", SampleOptions(model="toy", enhancer="toy"),
                                  Runtime(torch.device("cpu"), torch.float32), pca=True)
        shutil.copyfile(Path(folder) / "toy-pca.png", ROOT / "docs" / "toyworld-pca.png")
    pca = dataclasses.asdict(report.pca)
    # how far apart the two sets lie on the first component of their union, in units of their spread along it
    points = torch.tensor(pca.pop("scatter"))
    a, b = points[points[:, 2] == 0, 0], points[points[:, 2] == 1, 0]
    pca["pc1_separation"] = round(abs(a.mean() - b.mean()).item() / (a.std() + b.std()).item(), 3)
    RESULT.write_text(json.dumps({"prompts": report.prompts, "enhancer": report.enhancer, "model": report.model,
                                  "device": "CPU", "pca": pca}, indent=1) + "\n")
    print(RESULT)


if __name__ == "__main__":
    main()
