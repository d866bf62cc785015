"""Textual-inversion embeddings (`--embedding FILE`): the files SD users keep for trigger words such as EasyNegative,
read from safetensors only (never a pickle), in AUTOMATIC1111's layout (`emb_params`; SDXL's `clip_l` and `clip_g`)
or diffusers' (`{token: vectors}`). Loading them into a text encoder is the pipeline's own `load_textual_inversion`
(`FamilyAdapter.load_embeddings`); this module only reads and checks the file."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dicecli.errors import DamagedError, UsageError

@dataclass(frozen=True)
class Embedding:
    path: Path
    token: str  # the word that calls it in a prompt: the file's stem (A1111), or the token a diffusers file names
    vectors: dict[str, torch.Tensor] = field(repr=False)  # per text encoder ("emb_params" for one; "clip_l", "clip_g")
    sha256: str = ""

    @property
    def record(self) -> dict:
        """What caches, enhancers and sample folders record of it."""
        return {"token": self.token, "file": self.path.name, "sha256": self.sha256}


def read_embedding(spec: str | Path) -> Embedding:
    from dicecli.files import read_safetensors

    path = Path(spec)
    tensors = read_safetensors(path, "--embedding", "textual-inversion")
    if "emb_params" in tensors:
        vectors, token = {"emb_params": tensors["emb_params"]}, path.stem
    elif {"clip_l", "clip_g"} <= tensors.keys():
        vectors, token = {"clip_l": tensors["clip_l"], "clip_g": tensors["clip_g"]}, path.stem
    elif len(tensors) == 1:  # diffusers' learned_embeds: {token: vectors}
        token, value = next(iter(tensors.items()))
        vectors = {"emb_params": value}
    else:
        raise UsageError(f"--embedding {path} is not a textual-inversion embedding (it holds {', '.join(sorted(tensors))[:80]}); "
                         "give an A1111 or diffusers embedding file.")
    vectors = {k: v[None] if v.ndim == 1 else v for k, v in vectors.items()}
    if any(v.ndim != 2 or not torch.isfinite(v).all() for v in vectors.values()):
        raise DamagedError(f"--embedding {path} holds vectors that are not [tokens, width] finite numbers; the file "
                           "is damaged, download it again.")
    return Embedding(path, token, vectors, hashlib.sha256(path.read_bytes()).hexdigest())
