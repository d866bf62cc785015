"""DICE on ComfyUI's CONDITIONING, with no ComfyUI import: what the nodes compute (docs/comfyui.md).

ComfyUI's CONDITIONING is a list of entries `[embeds, options]`. CLIP Text Encode makes one entry whose
`embeds` is `[B, 77·k, D]`: a prompt longer than 75 tokens is split into k chunks, each its own 77-token CLIP
sequence (start token, words, end token, padding), encoded separately and concatenated along the tokens. An
enhancer is trained on exactly such 77-token sequences, so each chunk is enhanced as its own sequence, with
its own start token kept. `options` (`pooled_output`, area, strength, timestep range, masks, hooks) pass
through untouched: the pooled embedding stays the prompt's own, as in `dice sample`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from dicecli.enhancer import Enhancer
from dicecli.settings import ENHANCED_PARTS

# Which checkpoints make conditioning of a width, for the sentence that refuses a mismatch.
MAKERS = {768: "an SD1.5", 1024: "an SD2.x", 2048: "an SDXL", 4096: "a T5 (PixArt, Flux, SD3)"}
MARK = "dice_enhancer"  # the option an enhanced entry carries, so that it is never enhanced twice


class NodeError(ValueError):
    """A refusal ComfyUI shows on the node: one sentence naming the input and the fix."""


@dataclass(frozen=True)
class LoadedEnhancer:
    """What `DICE Load Enhancer` outputs (ComfyUI type DICE_ENHANCER)."""

    module: Enhancer
    meta: dict
    name: str  # the file name as ComfyUI lists it

    @property
    def tokens(self) -> int:
        return int(self.meta.get("tokens") or 77)

    @property
    def width(self) -> int:
        return int(self.meta["context_dim"])


def load(path: Path, device: torch.device | str = "cpu", name: str | None = None) -> LoadedEnhancer:
    """An enhancer file with `dice`'s own checks (damaged file, NaN weights), refused in one sentence when its
    family's conditioning is not what ComfyUI's CLIP Text Encode makes for SD1.5 and SDXL checkpoints."""
    from dicecli.enhancer import read_enhancer
    from dicecli.errors import DiceError

    name = name or Path(path).name
    try:
        module, meta = read_enhancer(Path(path), device)
    except DiceError as error:
        raise NodeError(str(error)) from None
    from dicecli.families import FAMILIES

    taken = [family for family, adapter in FAMILIES.items() if adapter.comfyui_conditioning]
    if meta["family"] not in taken:
        raise NodeError(f"Enhancer {name} is for the {meta['family']} family; the DICE nodes take enhancers of the "
                        f"{' and '.join(taken)} families (CLIP conditioning): use `dice sample` for this one.")
    return LoadedEnhancer(module, meta, name)


def first_chunk(conditioning: list, what: str) -> torch.Tensor:
    """The first 77-token sequence of a CONDITIONING's first entry, as [1, 77, D]: the enhancer's second input.
    A negative prompt longer than one chunk contributes its first chunk, as `dice` truncates one at 77 tokens."""
    if not conditioning or not isinstance(conditioning[0][0], torch.Tensor):
        raise NodeError(f"The {what} input holds no conditioning; connect a CLIP Text Encode output.")
    return conditioning[0][0][:1, :77]


def end_positions(chunks: list[list], end_token: int) -> list[int]:
    """The end-of-text position in each 77-token chunk of ComfyUI's tokenization (`clip.tokenize(text)`, one
    encoder's list): where the prompt's own tokens end and the padding part begins (the paper's section 4.3).
    Entries are (token, weight[, word id]); an embedding's vectors stand in for tokens and are never the end."""
    out = []
    for chunk in chunks:
        ids = [item[0] for item in chunk]
        found = [i for i, token in enumerate(ids) if i > 0 and isinstance(token, int) and token == end_token]
        out.append(found[0] if found else len(ids) - 1)
    return out


def enhance(loaded: LoadedEnhancer, positive: list, negative: torch.Tensor, strength: float = 1.0,
            part: str = "all", ends: list[int] | None = None) -> list:
    """`c' = c + strength · E(c, c_neg)` for every chunk of every entry of `positive` (ComfyUI's layout).

    `negative` is the enhancer's second input, [1, 77, D]: the encoded empty prompt (DICE's null input) or the
    first chunk of a negative prompt. `ends` (the end-of-text position of each chunk) is needed for `part`
    semantic or padding only. Entries come back in the input's device and dtype, with their options.
    """
    from dicecli.errors import UsageError
    from dicecli.families import Conditioning
    from dicecli.method import enhance_conditioning

    if part not in ENHANCED_PARTS:
        raise NodeError(f"part must be one of {', '.join(ENHANCED_PARTS)}, not {part!r}.")
    if part != "all" and ends is None:
        raise NodeError(f"part {part} needs the positive prompt's text (input prompt_text) to find where its "
                        "words end; give the same text as its CLIP Text Encode, or use part all.")
    tokens, width = loaded.tokens, loaded.width
    device = loaded.module.fc1.weight.device
    null = _checked(negative, loaded, "negative").to(device, torch.float32)
    out = []
    for embeds, options in positive:
        _checked(embeds, loaded, "positive")
        if MARK in options:
            raise NodeError(f"The positive conditioning is already enhanced (by {options[MARK]}); connect the CLIP "
                            "Text Encode output to DICE Enhance Conditioning, not an enhanced one.")
        batch, length = embeds.shape[:2]
        chunks = length // tokens
        if ends is not None and len(ends) != chunks:
            raise NodeError(f"prompt_text makes {len(ends)} chunk(s) of {tokens} tokens but the positive conditioning "
                            f"has {chunks}; give the same text as the positive prompt's CLIP Text Encode.")
        rows = embeds.to(device, torch.float32).reshape(batch * chunks, tokens, width)
        # Conditioning's end-of-text index is read only for part semantic/padding (and never for the negative).
        eos = torch.tensor(ends if ends is not None else [tokens - 1] * chunks).repeat(batch)
        try:
            enhanced = enhance_conditioning(loaded.module, Conditioning(rows, eos),
                                            Conditioning(null, torch.zeros(1, dtype=torch.long)), strength, part,
                                            dtype=embeds.dtype)
        except UsageError:
            raise NodeError(f"strength {strength:g} makes the enhanced conditioning overflow (NaN or infinite "
                            "numbers); use a smaller strength (1 is the enhancer as trained).") from None
        result = enhanced.prompt_embeds.reshape(batch, length, width).to(embeds.device, embeds.dtype)
        out.append([result, {**options, MARK: loaded.name}])
    return out


def _checked(embeds, loaded: LoadedEnhancer, what: str) -> torch.Tensor:
    """Refuse conditioning the enhancer cannot read, in one sentence: another family's width (the checkpoint and
    the enhancer do not belong together) or a length that is not whole 77-token chunks."""
    if not isinstance(embeds, torch.Tensor) or embeds.ndim != 3:
        raise NodeError(f"The {what} input is not text conditioning (a [batch, tokens, width] tensor); connect a "
                        "CLIP Text Encode output.")
    family = loaded.meta["family"]
    if embeds.shape[-1] != loaded.width:
        maker = MAKERS.get(embeds.shape[-1], "another")
        raise NodeError(f"The {what} conditioning is {embeds.shape[-1]} wide ({maker} checkpoint's) but enhancer "
                        f"{loaded.name} is for {family} ({loaded.width}-wide embeddings); use a {family} checkpoint, "
                        "or an enhancer trained for this checkpoint's family.")
    if embeds.shape[1] % loaded.tokens:
        raise NodeError(f"The {what} conditioning has {embeds.shape[1]} tokens, not whole chunks of {loaded.tokens}; "
                        "connect a CLIP Text Encode output (not one changed by another node).")
    return embeds
