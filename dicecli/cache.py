"""HDF5 caches of prompt embeddings (`dice-embeddings`) and training latents (`dice-latents`).

Schema (README, "Embedding cache format"): root attributes describe the model and how the file was made;
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
from dicecli.errors import UsageError
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


class EmbeddingCache:
    """Read access to a `dice-embeddings` file."""

    def __init__(self, path: Path, fmt: str = EMBEDDINGS_FORMAT):
        self.path = Path(path)
        if not is_hdf5(self.path):
            raise UsageError(f"{self.path} is not an HDF5 file; give a cache written by `dice encode`.")
        try:
            self.file = h5py.File(self.path, "r")
        except OSError as error:
            raise UsageError(f"{self.path} cannot be read as HDF5 ({error}); it may be damaged, re-create it.") from None
        self.attrs = {k: _plain(v) for k, v in self.file.attrs.items()}
        if self.attrs.get("format") != fmt:
            self.file.close()
            raise UsageError(f"{self.path} is not a {fmt} file (format={self.attrs.get('format')!r}); give one written by dicecli.")
        if int(self.attrs.get("format_version", 0)) > FORMAT_VERSION:
            self.file.close()
            raise UsageError(f"{self.path} was written by a newer dicecli (format_version {self.attrs['format_version']}); upgrade dicecli.")

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
        if isinstance(index, (list, np.ndarray)):
            index = np.asarray(index)
            order = np.argsort(index)
            rows = {name: self._read(prefix + name, index[order]) for name in FIELDS}
            inverse = torch.from_numpy(np.argsort(order))
            rows = {k: (v[inverse] if v is not None else None) for k, v in rows.items()}
        else:
            rows = {name: self._read(prefix + name, index) for name in FIELDS}
        return Conditioning(**rows)

    def _read(self, name: str, index):
        if name not in self.file:
            return None
        return torch.from_numpy(np.asarray(self.file[name][index]))


class CacheWriter:
    """Appends prompts and their conditioning to an HDF5 cache opened for writing."""

    def __init__(self, path: Path, header: dict | None = None):
        self.file = h5py.File(path, "a")
        if header is not None:
            for key, value in header.items():
                self.file.attrs[key] = value

    def __enter__(self) -> "CacheWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()

    def set_attrs(self, **attrs) -> None:
        for key, value in attrs.items():
            self.file.attrs[key] = value

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
            chunk = (max(1, min(16, len(array))),) + array.shape[1:]
            self.file.create_dataset(
                name, shape=(0,) + array.shape[1:], maxshape=(None,) + array.shape[1:], chunks=chunk,
                dtype=dtype or array.dtype, compression="gzip", compression_opts=1, shuffle=dtype is None,
            )
        dataset = self.file[name]
        start = dataset.shape[0]
        dataset.resize(start + len(array), axis=0)
        dataset[start:] = array


def _plain(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value
