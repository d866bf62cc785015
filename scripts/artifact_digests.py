"""Compare every image, cache and enhancer two test runs wrote: the check that a refactor changed no output.

    python -m pytest -q --slow --basetemp=/tmp/before      # on the old commit
    python -m pytest -q --slow --basetemp=/tmp/after       # on the new one
    python scripts/artifact_digests.py /tmp/before /tmp/after [--json OUT]

Files are matched by their path under the base temp folder (pytest names each test's folder after the test, so
the same test writes the same paths). Each run's base folder is replaced by `<base>` in every text a file records
(a cache's `source` or `model_resolved`, an enhancer's `trained_on`, a PNG's model): the one thing two runs may
rightly differ in, besides a cache's `created` timestamp. Then PNGs are compared by pixels and text chunks,
.safetensors files by tensor bytes and metadata, HDF5 caches by datasets and attributes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
from pathlib import Path

SUFFIXES = (".png", ".h5", ".safetensors")
VOLATILE_ATTRS = {"created"}


def normal(value, base: str):
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value.replace(base, "<base>") if isinstance(value, str) else value


def h5_digest(path: Path, base: str) -> str:
    import h5py

    digest = hashlib.sha256()
    with h5py.File(path, "r") as f:
        def add(name: str, item) -> None:
            digest.update(name.encode())
            for key in sorted(k for k in item.attrs if k not in VOLATILE_ATTRS):
                digest.update(f"{key}={normal(item.attrs[key], base)!r}".encode())
            if isinstance(item, h5py.Dataset):
                digest.update(item[()].tobytes() if item.dtype.kind != "O" else repr(item.asstr()[()].tolist()).encode())

        add("/", f)
        f.visititems(add)
    return digest.hexdigest()


def safetensors_digest(path: Path, base: str) -> str:
    data = path.read_bytes()
    size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + size])
    header["__metadata__"] = {k: normal(v, base) for k, v in header.get("__metadata__", {}).items()}
    return hashlib.sha256(json.dumps(header, sort_keys=True).encode() + data[8 + size :]).hexdigest()


def png_digest(path: Path, base: str) -> str:
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        text = {k: normal(v, base) for k, v in sorted(getattr(image, "text", {}).items())}
        pixels = np.asarray(image.convert("RGBA"))
    return hashlib.sha256(json.dumps(text).encode() + pixels.tobytes()).hexdigest()


def digest(path: Path, base: Path) -> str:
    readers = {".h5": h5_digest, ".safetensors": safetensors_digest, ".png": png_digest}
    try:
        return readers[path.suffix](path, str(base))
    except Exception:  # noqa: BLE001 - a deliberately damaged file of the reliability battery: its bytes
        return hashlib.sha256(path.read_bytes().replace(str(base).encode(), b"<base>")).hexdigest()


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
    differ = [name for name in shared if digest(before[name], args.before) != digest(after[name], args.after)]
    same_bytes = sum(before[n].read_bytes() == after[n].read_bytes() for n in shared if n not in differ)
    result = {"compared": len(shared), "by_kind": {s: sum(n.endswith(s) for n in shared) for s in SUFFIXES},
              "identical": len(shared) - len(differ), "identical_bytes": same_bytes, "different": differ,
              "only_before": sorted(set(before) - set(after)), "only_after": sorted(set(after) - set(before))}
    print(json.dumps({k: v if not isinstance(v, list) else len(v) for k, v in result.items()}, indent=1))
    for name in differ:
        print("different:", name)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
