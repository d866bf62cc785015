"""HDF5 caches of prompt embeddings (`dice-embeddings`) and training latents (`dice-latents`).

Schema (docs/formats.md, "Embedding cache"): root attributes describe the model and how the file was made;
datasets are chunked and compressed along the first axis and resizable, so a
cache can be extended. Writers always work on a temporary copy that replaces the
final file only when complete (see `files.atomic_path`).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np
import torch

from dicecli import __version__
from dicecli.errors import DamagedError, UsageError
from dicecli.families.base import Conditioning

EMBEDDINGS_FORMAT = "dice-embeddings"
LATENTS_FORMAT = "dice-latents"
FORMAT_VERSION = 1
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
STRING = h5py.string_dtype("utf-8")
# dataset names of a Conditioning's fields
FIELDS = {"prompt_embeds": "prompt_embeds", "eos_index": "eos_index",
          "pooled_prompt_embeds": "pooled_prompt_embeds", "attention_mask": "attention_mask"}


def is_hdf5(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8) == HDF5_MAGIC
    except OSError:
        return False


def storage_dtype(compute_dtype: torch.dtype) -> np.dtype:
    """fp32 results are stored as fp32; half-precision results as fp16 (HDF5 has no bf16)."""
    return np.dtype(np.float32 if compute_dtype == torch.float32 else np.float16)


def new_header(fmt: str, *, family: str, model: str, model_resolved: str, fingerprint: str,
               dtype: np.dtype, tokens: int, context_dim: int) -> dict:
    return {
        "format": fmt, "format_version": FORMAT_VERSION, "family": family, "model": model,
        "model_resolved": model_resolved, "text_encoder_fingerprint": fingerprint,
        "dtype": np.dtype(dtype).name, "tokens": tokens, "context_dim": context_dim,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "dicecli_version": __version__,
    }


def text_attrs(adapter) -> dict:
    """What a cache (or an enhancer's metadata) records of how a family adapter encodes beyond its model: the clip
    skip (none for 1, the default), and the textual-inversion embeddings and LoRAs loaded (JSON lists)."""
    import json

    out = {"clip_skip": int(adapter.clip_skip)} if adapter.clip_skip != 1 else {}
    for name in ("embeddings", "loras"):
        if getattr(adapter, name):
            out[name] = json.dumps([item.record for item in getattr(adapter, name)])
    return out


def text_attrs_of(attrs: dict) -> dict:
    """The same attributes, copied from another cache's."""
    return {k: attrs[k] for k in ("clip_skip", "embeddings", "loras") if k in attrs}


def clip_skip_of(attrs: dict) -> int:
    """The clip skip embeddings were made with (files made before dicecli recorded it: 1)."""
    return int(attrs.get("clip_skip", 1))


class EmbeddingCache:
    """Read access to a `dice-embeddings` (or `dice-latents`) file, checked when opened and as it is read.

    Opening checks the format and that the datasets agree with each other and with the attributes (one
    row per prompt, the recorded token count and width); every read checks that the numbers are finite.
    Each problem is one sentence naming the file (`name`: how to call it, e.g. "standard input")."""

    def __init__(self, path: Path, fmt: str = EMBEDDINGS_FORMAT, name: str | None = None):
        self.path = Path(path)
        self.name = name or str(self.path)
        if not is_hdf5(self.path):
            raise UsageError(f"{self.name} is not an HDF5 file; give a cache written by `dice encode`.")
        try:
            self.file = h5py.File(self.path, "r")
        except OSError as error:
            raise UsageError(f"{self.name} cannot be read as HDF5 ({error}); it may be damaged, re-create it.") from None
        try:
            self.attrs = {k: attr_value(v) for k, v in self.file.attrs.items()}
            if self.attrs.get("format") != fmt:
                raise UsageError(f"{self.name} is not a {fmt} file (format={self.attrs.get('format')!r}); give one written by dicecli.")
            if int(self.attrs.get("format_version", 0)) > FORMAT_VERSION:
                raise UsageError(f"{self.name} was written by a newer dicecli (format_version {self.attrs['format_version']}); upgrade dicecli.")
            self._check_attributes(fmt)
            self._check_layout()
        except BaseException:
            self.file.close()
            raise

    def _check_attributes(self, fmt: str) -> None:
        """The attributes the commands read: a file without them was not written by dicecli, or was edited."""
        required = ("family", "model", "tokens", "context_dim", "dtype") + (
            ("text_encoder_fingerprint",) if fmt == EMBEDDINGS_FORMAT else ())
        missing = [key for key in required if key not in self.attrs]
        if missing:
            raise DamagedError(f"{self.name} lacks the attributes {', '.join(missing)}; it was not written by dicecli or "
                               "was edited, re-create it.")

    def _check_layout(self) -> None:
        """Datasets that disagree (a truncated or edited file) are refused before any row is used."""
        if "prompts" not in self.file:
            raise DamagedError(f"{self.name} has no prompts dataset; it is damaged, re-create it.")
        for prefix in ("", "negative_"):
            if prefix + "prompts" not in self.file:
                continue
            count = self.file[prefix + "prompts"].shape[0]
            data = [prefix + n for n in (*FIELDS, "latents")]
            for name in (n for n in data if n in self.file):
                if self.file[name].shape[0] != count:
                    raise DamagedError(f"{self.name} holds {count} {prefix.replace('_', ' ')}prompts but {self.file[name].shape[0]} "
                                     f"rows of {name}; the file is damaged or was edited, re-create it.")
            embeds = self.file.get(prefix + "prompt_embeds")
            if embeds is not None and "tokens" in self.attrs:
                shape = (int(self.attrs["tokens"]), int(self.attrs["context_dim"]))
                if embeds.ndim != 3 or tuple(embeds.shape[1:]) != shape:
                    raise DamagedError(f"{self.name} records {shape[0]}x{shape[1]} embeddings but {prefix}prompt_embeds is "
                                     f"{'x'.join(map(str, embeds.shape[1:]))}; the file is damaged or was edited, re-create it.")
            mask = self.file.get(prefix + "attention_mask")
            if mask is not None and embeds is not None and tuple(mask.shape[1:]) != tuple(embeds.shape[1:2]):
                raise DamagedError(f"{self.name} has an attention mask of {mask.shape[1]} tokens for {embeds.shape[1]}-token "
                                 "embeddings; the file is damaged or was edited, re-create it.")

    def __enter__(self) -> "EmbeddingCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.file.close()

    def __len__(self) -> int:
        return self.file["prompts"].shape[0]

    @property
    def prompts(self) -> list[str]:
        return [p.decode() if isinstance(p, bytes) else p for p in self.file["prompts"][:]]

    @property
    def negative_prompts(self) -> list[str]:
        if "negative_prompts" not in self.file:
            return []
        return [p.decode() if isinstance(p, bytes) else p for p in self.file["negative_prompts"][:]]

    def conditioning(self, index=slice(None), prefix: str = "") -> Conditioning:
        """Rows `index` as a Conditioning (prefix "negative_" for the negative prompts)."""
        if isinstance(index, (list, np.ndarray)):  # HDF5 reads rows in increasing order, each once
            unique, inverse = np.unique(np.asarray(index), return_inverse=True)
            rows = {name: self._read(prefix + name, unique) for name in FIELDS}
            inverse = torch.from_numpy(inverse.reshape(-1))
            rows = {k: (v[inverse] if v is not None else None) for k, v in rows.items()}
        else:
            rows = {name: self._read(prefix + name, index) for name in FIELDS}
        return Conditioning(**rows)

    def array(self, name: str) -> np.ndarray:
        """A whole float dataset (e.g. `latents`), checked to be finite."""
        return self._finite(name, np.asarray(self.file[name][:]))

    def _read(self, name: str, index):
        if name not in self.file:
            return None
        dataset = self.file[name]
        if isinstance(index, np.ndarray):  # row by row: h5py's fancy indexing is ~10x slower for a few random rows
            rows = np.stack([dataset[i] for i in index]) if len(index) else np.asarray(dataset[index])
        else:
            rows = np.asarray(dataset[index])
        return torch.from_numpy(self._finite(name, rows))

    def _finite(self, name: str, array: np.ndarray) -> np.ndarray:
        """NaN or inf would give black images or NaN caches with exit 0; the cost is a pass over rows already read."""
        if array.dtype.kind == "f" and not all_finite(array):
            raise DamagedError(f"{self.name} holds NaN or infinite numbers in {name}; the file is damaged, re-create it "
                             "with the command that wrote it.")
        return array


class CacheWriter:
    """Appends prompts and their conditioning to an HDF5 cache opened for writing."""

    def __init__(self, path: Path, header: dict | None = None, random_access: bool = False):
        """`random_access`: rows stored one per chunk, uncompressed, for files read a few random rows at a time
        (a latent cache's caption embeddings, read at every distill step); else 16-row gzip chunks."""
        self.file = h5py.File(path, "a")
        self.random_access = random_access
        if header is not None:
            for key, value in header.items():
                self.file.attrs[key] = value

    def __enter__(self) -> "CacheWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()

    def append(self, prompts: list[str], cond: Conditioning, prefix: str = "") -> None:
        self._extend(prefix + "prompts", np.array(prompts, dtype=object), STRING)
        dtype = np.dtype(self.file.attrs["dtype"])
        for field_name, dataset in FIELDS.items():
            value = getattr(cond, field_name)
            if value is None:
                continue
            array = value.detach().to("cpu").float().numpy() if value.is_floating_point() else value.cpu().numpy()
            self._extend(prefix + dataset, array.astype(dtype if value.is_floating_point() else np.int64))

    def append_array(self, name: str, array: np.ndarray) -> None:
        self._extend(name, array.astype(np.dtype(self.file.attrs["dtype"])))

    def append_strings(self, name: str, strings: list[str]) -> None:
        self._extend(name, np.array(strings, dtype=object), STRING)

    def replace(self, prompts: list[str], cond: Conditioning, prefix: str) -> None:
        for name in [prefix + "prompts"] + [prefix + d for d in FIELDS.values()]:
            if name in self.file:
                del self.file[name]
        self.append(prompts, cond, prefix)

    def _extend(self, name: str, array: np.ndarray, dtype=None) -> None:
        if name not in self.file:
            rows = 1 if self.random_access else max(1, min(16, len(array)))
            compression = {} if self.random_access else dict(compression="gzip", compression_opts=1, shuffle=dtype is None)
            self.file.create_dataset(
                name, shape=(0,) + array.shape[1:], maxshape=(None,) + array.shape[1:], chunks=(rows,) + array.shape[1:],
                dtype=dtype or array.dtype, **compression,
            )
        dataset = self.file[name]
        start = dataset.shape[0]
        dataset.resize(start + len(array), axis=0)
        dataset[start:] = array


# IEEE exponent bits: all set means inf or NaN. Testing them on the raw bits is three times faster than
# np.isfinite on float16, the usual storage (benchmarks/cache_check_cost.py).
EXPONENT_BITS = {np.dtype(np.float16): (np.uint16, 0x7C00), np.dtype(np.float32): (np.uint32, 0x7F800000),
                 np.dtype(np.float64): (np.uint64, 0x7FF0000000000000)}


FINITE_CHUNK = 1 << 20  # elements tested at a time: small temporaries stay in cache (no page faults)


def all_finite(array: np.ndarray) -> bool:
    if array.dtype not in EXPONENT_BITS:
        return bool(np.isfinite(array).all())
    as_int, mask = EXPONENT_BITS[array.dtype]
    bits, mask = np.ascontiguousarray(array).reshape(-1).view(as_int), as_int(mask)
    scratch = np.empty(min(FINITE_CHUNK, bits.size), dtype=as_int)
    for start in range(0, bits.size, FINITE_CHUNK):
        block = bits[start : start + FINITE_CHUNK]
        part = scratch[: block.size]
        np.bitwise_and(block, mask, out=part)
        if (part == mask).any():
            return False
    return True


def attr_value(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value
