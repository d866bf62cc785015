"""The DICE enhancer network and its safetensors file format (docs/formats.md, "Enhancer file").

    c' = c + alpha * E(c, c_neg), first token of c' kept equal to c's (where the family has a start token).

E: a shared Linear(D, inner) on both inputs -> ReLU -> one multi-head
cross-attention (queries from the prompt, keys/values from the negative prompt;
q/k/v without bias, output projection with bias) -> ReLU -> Linear(inner, D).
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import nn

from dicecli import __version__
from dicecli.errors import DamagedError, IncompatibleError, UsageError
from dicecli.files import atomic_path

FORMAT = "dice-enhancer"
# metadata every enhancer file must carry, and its JSON type (what the network is built from)
REQUIRED_METADATA = {"family": str, "context_dim": int, "inner_dim": int, "heads": int, "keep_first_token": bool}
FORMAT_VERSION = 1
INIT = "torch-default, fc2 zero"  # starts as the identity map c' = c


class CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = (proj(t).view(b, -1, self.heads, d // self.heads).transpose(1, 2)
                   for proj, t in ((self.to_q, x), (self.to_k, context), (self.to_v, context)))
        mask = None if context_mask is None else context_mask.bool()[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.to_out(out.transpose(1, 2).reshape(b, n, d))


ENHANCED_MASKS = ("prompt", "all")


class Enhancer(nn.Module):
    def __init__(self, context_dim: int, inner_dim: int = 512, heads: int = 8, keep_first_token: bool = True,
                 enhanced_mask: str = "prompt"):
        super().__init__()
        if enhanced_mask not in ENHANCED_MASKS:
            raise ValueError(f"enhanced_mask must be one of {ENHANCED_MASKS}, not {enhanced_mask!r}")
        self.context_dim, self.inner_dim, self.heads = context_dim, inner_dim, heads
        self.keep_first_token = keep_first_token
        # With text attention masks (PixArt-alpha): "all" widens c''s mask to every token, so the enhanced
        # padding tokens reach the denoiser; "prompt" keeps the prompt's own mask (see `dicecli.method`).
        self.enhanced_mask = enhanced_mask
        self.fc1 = nn.Linear(context_dim, inner_dim)
        self.attn = CrossAttention(inner_dim, heads)
        self.fc2 = nn.Linear(inner_dim, context_dim)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    @classmethod
    def for_text(cls, text) -> "Enhancer":
        """A new (identity) enhancer for a family's text spec (`dicecli.families.TextSpec`)."""
        return cls(text.width, keep_first_token=text.keep_first_token, enhanced_mask=text.enhanced_mask)

    def residual(self, c: torch.Tensor, c_neg: torch.Tensor, neg_mask: torch.Tensor | None = None) -> torch.Tensor:
        """E(c, c_neg), shape [N, T, D]; its first token is zero when keep_first_token."""
        h = F.relu(self.fc1(c))
        h_neg = F.relu(self.fc1(c_neg))
        delta = self.fc2(F.relu(self.attn(h, h_neg, neg_mask)))
        if self.keep_first_token:
            delta = torch.cat([torch.zeros_like(delta[:, :1]), delta[:, 1:]], dim=1)
        return delta

    def forward(self, c: torch.Tensor, c_neg: torch.Tensor, alpha: float = 1.0, neg_mask=None) -> torch.Tensor:
        """c' = c + alpha * E(c, c_neg), computed in the enhancer's dtype and returned in c's.

        A single negative embedding ([1, T, D]) is broadcast over the batch.
        """
        if c_neg.shape[0] == 1 and c.shape[0] > 1:
            c_neg = c_neg.expand(c.shape[0], -1, -1)
            neg_mask = None if neg_mask is None else neg_mask.expand(c.shape[0], -1)
        weight = self.fc1.weight
        delta = self.residual(c.to(weight.dtype), c_neg.to(weight.dtype), neg_mask)
        return (c.to(delta.dtype) + alpha * delta).to(c.dtype)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_enhancer(spec: str) -> Path:
    """An enhancer argument as a path: an existing file wins, else the name of an enhancer a plug-in ships."""
    from dicecli.plugins import shipped_enhancers

    path = Path(spec)
    if not path.exists() and spec in shipped_enhancers():
        return shipped_enhancers()[spec]
    return path


def save_enhancer(enhancer: Enhancer, path: Path, dtype: torch.dtype = torch.float32, **metadata) -> None:
    """Write the weights and the enhancer-file metadata atomically (string values, JSON where structured).

    Weights are stored in `dtype` (float32 unless asked; the shipped reference enhancer is float16)
    and always loaded into a float32 module.
    """
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "context_dim": enhancer.context_dim,
        "inner_dim": enhancer.inner_dim, "heads": enhancer.heads, "keep_first_token": enhancer.keep_first_token,
        "enhanced_mask": enhancer.enhanced_mask,
        "init": INIT, "dicecli_version": __version__, **metadata,
    }
    strings = {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in enhancer.state_dict().items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(canonical_header(save(tensors, metadata=strings)))


def canonical_header(data: bytes) -> bytes:
    """The same safetensors file with its JSON header written in sorted key order.

    safetensors writes the metadata map in hash order, which differs between processes, so the
    same enhancer saved twice gave two files with different bytes (and sha256s, which sample
    folders record). Tensor offsets are relative to the data section, so only the header changes.
    """
    size = struct.unpack("<Q", data[:8])[0]
    header = json.dumps(json.loads(data[8 : 8 + size]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the format pads the header with spaces to 8-byte alignment
    return struct.pack("<Q", len(header)) + header + data[8 + size :]

def read_metadata(path: Path) -> dict:
    """The enhancer file's metadata, validated, without reading the weights."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"Enhancer {path} does not exist; check the enhancer path.")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise UsageError(f"Enhancer {path} is not a readable .safetensors file ({error}).") from None
    if raw.get("format") != FORMAT:
        raise UsageError(f"{path} is not a dice enhancer (format={raw.get('format')!r}); give a file written by `dice distill`.")
    meta = {}
    for key, value in raw.items():
        try:
            meta[key] = json.loads(value)
        except (json.JSONDecodeError, TypeError):
            meta[key] = value
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise UsageError(f"Enhancer {path} needs a newer dicecli (format_version {meta['format_version']}); upgrade dicecli.")
    for key, kind in REQUIRED_METADATA.items():
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool) and kind is int:
            raise DamagedError(f"Enhancer {path} has no valid {key} in its metadata ({meta.get(key)!r}); the file is "
                               "damaged or was edited, re-export it.")
    return meta


def check_compatible(meta: dict, path: Path, *, family: str, context_dim: int | None = None,
                     tokens: int | None = None, model: str = "the model") -> None:
    """Refuse an enhancer made for another family or embedding shape, in one sentence (before weights load)."""
    if meta.get("family") != family:
        raise IncompatibleError(
            f"Enhancer {path} was trained for the {meta.get('family')} family and cannot be used with {model} "
            f"({family}); use an enhancer trained on a {family} model."
        )
    if context_dim is not None and int(meta["context_dim"]) != context_dim:
        raise IncompatibleError(
            f"Enhancer {path} works on {meta['context_dim']}-wide embeddings but {model} produces {context_dim}-wide "
            "ones; use an enhancer trained on a model of the same architecture."
        )
    if tokens is not None and meta.get("tokens") is not None and int(meta["tokens"]) != tokens:
        raise IncompatibleError(
            f"Enhancer {path} expects {meta['tokens']} tokens but {model} produces {tokens}; use a matching enhancer."
        )


def read_enhancer(path: Path, device: torch.device | str = "cpu") -> tuple[Enhancer, dict]:
    """An enhancer file's network (on `device`, frozen) and metadata, checked: metadata, shapes, finite weights.
    (`dicecli.load_enhancer`, the Python API's, also checks it against a pipeline.)"""
    meta = read_metadata(path)
    mask = meta.get("enhanced_mask", "prompt")  # older files: SD families, which have no mask to widen
    if mask not in ENHANCED_MASKS:
        raise UsageError(f"Enhancer {path} has enhanced_mask {mask!r}, which this dicecli does not know; upgrade dicecli.")
    enhancer = Enhancer(int(meta["context_dim"]), int(meta["inner_dim"]), int(meta["heads"]), bool(meta["keep_first_token"]),
                        mask)
    from safetensors.torch import load_file

    state = load_file(str(path))
    try:
        enhancer.load_state_dict(state)
    except RuntimeError as error:
        raise DamagedError(f"Enhancer {path} has weights that do not match its metadata ({str(error).splitlines()[0]}); re-export it.") from None
    broken = [name for name, tensor in state.items() if not torch.isfinite(tensor).all()]
    if broken:  # NaN or inf weights give black images with exit 0
        raise DamagedError(f"Enhancer {path} holds NaN or infinite weights ({', '.join(sorted(broken))}); the file is damaged, "
                           "use a checkpoint from the run's work dir or train it again.")
    return enhancer.to(device).eval().requires_grad_(False), meta
