"""What checking a cache costs when it is read (CPU): `EmbeddingCache` checks that its datasets agree when it is
opened and that every row read is finite. This times reading a whole cache of PROMPTS rows of 77 x WIDTH fp16
embeddings (SD1.5's shape by default) and, separately, the finiteness check of the rows read (timing the two
apart: reading a 2 GB file varies by more than the check costs), and writes the numbers to --out.

    python benchmarks/cache_check_cost.py --prompts 20000 --out benchmarks/results/cache-check-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dicecli.cache import EMBEDDINGS_FORMAT, CacheWriter, EmbeddingCache, all_finite, new_header
from dicecli.families import Conditioning


def build(path: Path, prompts: int, width: int, tokens: int = 77, batch: int = 1000) -> None:
    header = new_header(EMBEDDINGS_FORMAT, family="sd15", model="random", model_resolved="random", fingerprint="0",
                        dtype=np.float16, tokens=tokens, context_dim=width)
    rng = np.random.default_rng(0)
    with CacheWriter(path, header) as writer:
        for start in range(0, prompts, batch):
            n = min(batch, prompts - start)
            embeds = torch.from_numpy(rng.standard_normal((n, tokens, width), dtype=np.float32))
            writer.append([f"prompt {i}" for i in range(start, start + n)],
                          Conditioning(embeds, torch.full((n,), 5, dtype=torch.int64)))


def read_unchecked(path: Path) -> tuple[float, np.ndarray]:
    """Seconds to read every row as `dice sample` does, with the finiteness check off (the layout check at open
    stays), and the rows read."""
    start = time.perf_counter()
    with EmbeddingCache(path) as cache:
        cache._finite = lambda name, array: array
        rows = cache.conditioning().prompt_embeds.numpy()
    return time.perf_counter() - start, rows


def check(rows: np.ndarray) -> float:
    start = time.perf_counter()
    assert all_finite(rows)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=20000)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "cache.h5"
        build(path, args.prompts, args.width)
        read_unchecked(path)  # warm the page cache
        reads, checks = [], []
        for _ in range(args.repeats):
            seconds, rows = read_unchecked(path)
            reads.append(seconds)
            checks.append(check(rows))
            del rows
        size = path.stat().st_size
    result = {"prompts": args.prompts, "shape": [77, args.width], "dtype": "float16", "file_mb": round(size / 2**20),
              "read_seconds": round(min(reads), 3), "check_seconds": round(min(checks), 4),
              "overhead": round(min(checks) / min(reads), 4), "reads": reads, "checks": checks,
              "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "torch": torch.__version__}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
