"""Compare every image, cache and enhancer two test runs wrote: the check that a refactor changed no output.

    python -m pytest -q --slow --basetemp=/tmp/before      # on the old commit
    python -m pytest -q --slow --basetemp=/tmp/after       # on the new one
    python scripts/artifact_digests.py /tmp/before /tmp/after [--json OUT]

Files are matched by their path under the base temp folder (pytest names each test's folder after the test, so
the same test writes the same paths). PNGs and .safetensors files are compared byte for byte; HDF5 caches by their
datasets and attributes, less `created` (a timestamp). A PNG whose bytes differ is also compared pixel by pixel,
to tell a metadata change from an image change.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

SUFFIXES = (".png", ".h5", ".safetensors")
VOLATILE_ATTRS = {"created"}


def h5_digest(path: Path) -> str:
    import h5py

    digest = hashlib.sha256()
    with h5py.File(path, "r") as f:
        def add(name: str, item) -> None:
            digest.update(name.encode())
            for key in sorted(k for k in item.attrs if k not in VOLATILE_ATTRS):
                digest.update(f"{key}={item.attrs[key]!r}".encode())
            if isinstance(item, h5py.Dataset):
                digest.update(item[()].tobytes() if item.dtype.kind != "O" else repr(item.asstr()[()].tolist()).encode())

        add("/", f)
        f.visititems(add)
    return digest.hexdigest()


def digest(path: Path) -> str:
    if path.suffix == ".h5":
        try:
            return h5_digest(path)
        except OSError:  # a deliberately damaged cache of the reliability battery
            pass
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pixels_equal(a: Path, b: Path) -> bool:
    import numpy as np
    from PIL import Image

    try:
        with Image.open(a) as x, Image.open(b) as y:
            return np.array_equal(np.asarray(x.convert("RGBA")), np.asarray(y.convert("RGBA")))
    except OSError:
        return False


def artifacts(base: Path) -> dict[str, Path]:
    return {str(p.relative_to(base)): p for p in base.rglob("*") if p.suffix in SUFFIXES and p.is_file()
            and not p.name.startswith(".")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    before, after = artifacts(args.before), artifacts(args.after)
    shared = sorted(set(before) & set(after))
    differ, pixels_same = [], []
    for name in shared:
        if digest(before[name]) != digest(after[name]):
            if name.endswith(".png") and pixels_equal(before[name], after[name]):
                pixels_same.append(name)
            else:
                differ.append(name)
    counts = {suffix: sum(n.endswith(suffix) for n in shared) for suffix in SUFFIXES}
    result = {"compared": len(shared), "by_kind": counts, "identical": len(shared) - len(differ) - len(pixels_same),
              "different": differ, "png_metadata_only": pixels_same,
              "only_before": sorted(set(before) - set(after)), "only_after": sorted(set(after) - set(before))}
    print(json.dumps({k: v if not isinstance(v, list) else len(v) for k, v in result.items()}, indent=1))
    for name in differ:
        print("different:", name)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
