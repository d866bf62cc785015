"""The preparation layer: what `dice sample`, `dice enhance` and `dice transfer` resolve before any work.

One path for every command (docs/architecture.md, "Preparation"):

1. `read_input` reads INPUT (a prompts file, an embedding cache, or standard input) once.
2. `prepare` resolves the model (`--model`, else the cache's, else the enhancer's `trained_on`), the
   enhancer, the strength and the negative prompt, and checks that they belong together from metadata
   and config files only, before any weights load.
3. `Prepared.load` loads the model's adapter and applies the text-encoder policy.

The compatibility policy, the same in every command:
- another family, or embeddings of another width or length: refused in one sentence before weights load;
- the same family and shape but another text encoder (a cache encoded with another model, an enhancer
  trained on another model): allowed, as the paper's transfer is, with one note that names both models.

The negative prompt: `--negative`, else the one stored with the input cache, else none (the empty prompt).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from dicecli.errors import IncompatibleError, UsageError

if TYPE_CHECKING:
    import torch

    from dicecli.enhancer import Enhancer
    from dicecli.families import Conditioning, FamilyAdapter
    from dicecli.refs import ModelRef
    from dicecli.settings import SampleOptions

STDIN = "-"


@dataclass
class InputData:
    """What INPUT holds: prompts, and their embeddings when it is a cache."""

    name: str  # how sentences call it: the path as given, or "standard input"
    path: Path | None  # the file itself (None for standard input, which is read and gone)
    prompts: list[str]
    cond: "Conditioning | None" = None  # a cache's embeddings, one row per prompt
    attrs: dict | None = None  # a cache's attributes
    stored_negative: str | None = None  # a cache's negative prompt, and its embedding
    stored_negative_cond: "Conditioning | None" = None

    @property
    def is_cache(self) -> bool:
        return self.attrs is not None

    @property
    def enhanced_by(self) -> str | None:
        return (self.attrs or {}).get("enhancer") or None


def read_input(source: str, empty_stdin: str | None = None) -> InputData:
    """Read a prompts file, an embedding cache or standard input (`-`) into memory.

    `empty_stdin`: the sentence for an empty standard input (when INPUT was not given and nothing is piped)."""
    from dicecli.cache import EmbeddingCache
    from dicecli.prompts import open_input, read_prompts, unique

    kind, path = open_input(source)
    from_stdin = source == STDIN
    name = "standard input" if from_stdin else source
    try:
        if from_stdin and empty_stdin and path.stat().st_size == 0:
            raise UsageError(empty_stdin)
        if kind == "prompts":
            prompts = unique(read_prompts(str(path), name=name) if from_stdin else read_prompts(source))
            return InputData(name, None if from_stdin else Path(source), prompts)
        with EmbeddingCache(path, name=name) as cache:
            data = InputData(name, None if from_stdin else Path(source), cache.prompts, cache.conditioning(),
                             dict(cache.attrs))
            if cache.negative_prompts:
                data.stored_negative = cache.negative_prompts[0]
                data.stored_negative_cond = cache.conditioning([0], prefix="negative_")
            return data
    finally:
        if from_stdin and path is not None:
            path.unlink(missing_ok=True)  # the spooled standard input never outlives the read


@dataclass
class EnhancerChoice:
    """An enhancer file, its metadata read (weights not yet)."""

    path: Path
    meta: dict

    @functools.cached_property
    def sha256(self) -> str:
        from dicecli.enhancer import file_sha256

        return file_sha256(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    def load(self, device) -> "Enhancer":
        from dicecli.enhancer import read_enhancer

        return read_enhancer(self.path, device)[0]


def open_enhancer(spec: str | Path) -> EnhancerChoice:
    """`--enhancer`: a file, or the name of an enhancer a plug-in ships; its metadata is read and checked."""
    from dicecli.enhancer import read_metadata, resolve_enhancer

    path = resolve_enhancer(str(spec))
    return EnhancerChoice(path, read_metadata(path))


@dataclass
class Provenance:
    """Which enhancer made the embeddings, at which strength (recorded in caches and sample folders)."""

    enhancer: str
    enhancer_sha256: str | None
    alpha: float
    part: str = "all"  # which part of the embedding was replaced by the enhanced one (`dicecli.method.PARTS`)


@dataclass
class Prepared:
    """Input, model, enhancer, strength and negative prompt of one command, resolved and checked together."""

    input: InputData
    ref: "ModelRef"
    enhancer: EnhancerChoice | None
    alpha: float | None  # the strength an enhancer is applied with (None without one)
    negative: str  # the negative prompt ("" = none: the null prompt)
    part: str = "all"  # the part of the embedding the enhancer replaces (`dicecli.method.PARTS`)
    adapter: "FamilyAdapter | None" = field(default=None, repr=False)

    @property
    def input_paths(self) -> list[Path]:
        """Files and folders this command reads, which no output may replace (`files.check_output`)."""
        paths = [self.input.path, self.enhancer.path if self.enhancer else None, self.ref.source.local_path]
        return [p for p in paths if p is not None]

    @property
    def provenance(self) -> Provenance | None:
        if self.enhancer is not None:
            return Provenance(self.enhancer.name, self.enhancer.sha256, float(self.alpha), self.part)
        if self.input.enhanced_by:
            attrs = self.input.attrs
            return Provenance(attrs["enhancer"], attrs.get("enhancer_sha256"), float(attrs["alpha"]),
                              str(attrs.get("enhanced_part", "all")))
        return None

    # -- loading ------------------------------------------------------------------------
    def load(self, device: "torch.device", dtype: "torch.dtype", note: Callable[[str], None] = lambda _: None,
             adapter: "FamilyAdapter | None" = None) -> "FamilyAdapter":
        """The model's adapter (components load on first use), and the text-encoder policy applied:
        a cache or enhancer made with another text encoder of this family is used, with one note."""
        from dicecli.families import load_adapter

        self.adapter = adapter or load_adapter(self.ref, device, dtype)
        if self.enhancer is not None and int(self.enhancer.meta.get("clip_skip", 1)) != self.ref.clip_skip:
            note(f"enhancer {self.enhancer.name} was trained with clip skip {self.enhancer.meta.get('clip_skip', 1)}; "
                 f"{self.ref.given} is used with clip skip {self.ref.clip_skip}, so it works on other embeddings than it "
                 "was trained on (as a transfer).")
        cached = (self.input.attrs or {}).get("text_encoder_fingerprint")
        recorded = self.enhancer.meta.get("text_encoder_fingerprint") if self.enhancer else None
        if cached is None and recorded is None:
            return self.adapter  # nothing to compare: no need to hash the text encoder
        fingerprint = self.adapter.text_encoder_fingerprint()
        if cached not in (None, fingerprint):
            note(other_text_encoder(f"the embeddings in {self.input.name}", self.input.attrs["model"], self.ref.given))
        if self.enhancer is not None:
            said = enhancer_note(self.enhancer, self.adapter, self.ref.given)
            if said:
                note(said)
        return self.adapter

    # -- conditioning -------------------------------------------------------------------
    def conditioning(self) -> "Conditioning":
        """Every prompt's conditioning on the model's device: the cache's, or encoded now."""
        cond = self.input.cond if self.input.cond is not None else self.adapter.encode_all(self.input.prompts)
        return cond.to(self.adapter.device)

    def batches(self, batch_size: int, start: int = 0, stop: int | None = None) -> Iterator[tuple[list[str], "Conditioning"]]:
        """(prompts, conditioning) of rows start..stop-1 in batches: slices of the cache, or encoded batch by batch
        (for long lists). `start` is a multiple of `batch_size` for the batches one process would make."""
        prompts = self.input.prompts[start:stop]
        if self.input.cond is None:
            for batch, encoded in self.adapter.encode_batches(prompts, batch_size):
                yield batch, encoded.conditioning
            return
        cond = self.input.cond[start : start + len(prompts)]
        for first in range(0, len(prompts), batch_size):
            yield prompts[first : first + batch_size], cond[first : first + batch_size]

    def enhancer_negative(self) -> "Conditioning":
        """The enhancer's second input: the cache's stored negative embedding when it is the one used, else
        the negative prompt (or the null prompt) encoded by this model."""
        if self.input.stored_negative_cond is not None and self.negative == self.input.stored_negative:
            return self.input.stored_negative_cond.to(self.adapter.device)
        return self.adapter.negative(self.negative)

    def cfg_negative(self) -> "Conditioning":
        """The CFG negative branch, as the family's pipeline builds it (SDXL: zeros for no negative prompt)."""
        if not self.negative:
            return self.adapter.unconditional("")
        return self.enhancer_negative()


def enhancer_note(enhancer: EnhancerChoice, adapter: "FamilyAdapter", model: str) -> str | None:
    """The text-encoder policy's note for an enhancer trained on another model of the family (None: the same
    text encoder, or the enhancer does not say)."""
    recorded = enhancer.meta.get("text_encoder_fingerprint")
    if recorded is None or recorded == adapter.text_encoder_fingerprint():
        return None
    return other_text_encoder(f"enhancer {enhancer.name}", enhancer.meta.get("trained_on"), model)


def other_text_encoder(what: str, made_with: str | None, model: str) -> str:
    """The note for the text-encoder policy (one sentence, the same in every command)."""
    return (f"{what} come from {made_with}, whose text encoder differs from {model}'s; using them with {model} "
            "as a transfer (docs/architecture.md, \"Preparation\").")


def prepare(data: InputData, options: "SampleOptions", enhancer: EnhancerChoice | None = None,
            needs_model_for: str = "this command") -> Prepared:
    """Resolve and check everything from metadata and config files; no weights are loaded. Of `options`, the
    model, the strength, the part, the negative prompt and the VAE are read here (the enhancer is `enhancer`)."""
    from dicecli.cache import clip_skip_of
    from dicecli.enhancer import check_compatible
    from dicecli.families import adapter_class
    from dicecli.refs import resolve_model
    from dicecli.settings import ENHANCED_PARTS as PARTS
    from dicecli.settings import SampleConfig, check_choice

    model, alpha, negative, part = options.model, options.alpha, options.negative, options.part
    if part is not None:
        check_choice("--enhance-part", part, PARTS)
    if part not in (None, "all") and enhancer is None:
        raise UsageError("--enhance-part needs --enhancer (an enhanced cache from `dice enhance` already has its part).")
    if data.enhanced_by:
        if enhancer is not None:
            raise UsageError(f"{data.name} is already enhanced (with {data.enhanced_by}); drop --enhancer, or use "
                             "the plain cache from `dice encode`.")
        if negative is not None:
            raise UsageError(f"{data.name} was enhanced with the negative prompt {data.stored_negative!r}; give "
                             "--negative to `dice enhance` instead.")
    if alpha is not None and enhancer is None:
        raise UsageError("--alpha needs --enhancer (an enhanced cache from `dice enhance` already has its alpha).")

    given = model or (data.attrs or {}).get("model") or (enhancer.meta.get("trained_on") if enhancer else None)
    if not given:
        raise UsageError(f"{needs_model_for} needs --model with a prompts file (or an --enhancer, whose "
                         "trained_on model is used).")
    ref = resolve_model(given, vae=options.vae, clip_skip=options.clip_skip, embeddings=options.embeddings,
                        loras=options.loras)
    family = adapter_class(ref.family, ref.given)
    if enhancer is not None:
        check_compatible(enhancer.meta, enhancer.path, family=ref.family, model=ref.given)  # no config read yet
    text = family.text_without_weights(ref.source)
    if data.is_cache:
        attrs = data.attrs
        if attrs["family"] != ref.family:
            raise IncompatibleError(f"{data.name} holds {attrs['family']} embeddings; --model {ref.given} is {ref.family}.")
        if clip_skip_of(attrs) != ref.clip_skip:
            raise IncompatibleError(
                f"{data.name} holds embeddings made with clip skip {clip_skip_of(attrs)}, but {ref.given} is used with "
                f"clip skip {ref.clip_skip}; give --clip-skip {clip_skip_of(attrs)}, or encode the prompts again with "
                f"--clip-skip {ref.clip_skip}."
            )
        if (int(attrs["tokens"]), int(attrs["context_dim"])) != (text.tokens, text.width):
            raise IncompatibleError(
                f"{data.name} holds {attrs['tokens']}x{attrs['context_dim']} embeddings but {ref.given} takes "
                f"{text.tokens}x{text.width}; encode the prompts with this model (`dice encode --model {ref.given}`)."
            )
    if enhancer is not None:
        check_compatible(enhancer.meta, enhancer.path, family=ref.family, context_dim=text.width, tokens=text.tokens,
                         model=ref.given)
        alpha = SampleConfig.resolve(ref.family, ref.recipe, alpha=alpha).alpha
    chosen_negative = negative if negative is not None else (data.stored_negative or "")
    return Prepared(data, ref, enhancer, alpha, chosen_negative, part or "all")
