"""`dice attention`: the denoiser's cross-attention maps per token, original vs enhanced (the paper's Figure 9).

The maps are read by wrapping the cross-attention processors of the denoiser's layers: the wrapper calls the
layer's own processor for the output (so the images are exactly those of `dice sample`) and computes the
attention probabilities on the side from the same queries and keys, averaged over heads and over the layers
of the chosen resolution. UNets (SD1.5, SDXL): the decoder's layers closest to 1/16 of the image side (32 x 32
at 512 px, the paper's; 64 x 64 for SDXL at 1024 px); transformers (PixArt-α): every block, at the patch grid.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
import torch
from PIL import Image, ImageDraw

from dicecli.analysis import enhance_prompts, prepare_analysis
from dicecli.errors import UsageError
from dicecli.files import atomic_path
from dicecli.preparation import InputData
from dicecli.sampling import check_seeds, generate, make_scheduler
from dicecli.runtime import Runtime
from dicecli.settings import SampleOptions

CELL = 96  # pixels per map in the grid
LABEL = 150  # the row labels' width
SPECIAL = {"<end>": "the end-of-text token", "<padding>": "the padding tokens after it (mean)"}
MAX_WORDS = 8


class CaptureProcessor:
    """Calls the layer's own processor, and on the side records the attention probabilities (mean over heads)."""

    def __init__(self, original, capture: "AttentionCapture", name: str):
        self.original, self.capture, self.name = original, capture, name

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
        out = self.original(attn, hidden_states, encoder_hidden_states=encoder_hidden_states,
                            attention_mask=attention_mask, **kwargs)
        if self.capture.recording and encoder_hidden_states is not None:
            self.capture.record(self.name, self.probabilities(attn, hidden_states, encoder_hidden_states, attention_mask))
        return out

    @torch.no_grad()
    def probabilities(self, attn, hidden_states, context, attention_mask) -> torch.Tensor:
        """[B, queries, keys] softmax(q k^T / sqrt(d)) as the layer computes it, averaged over its heads."""
        if hidden_states.ndim == 4:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        if attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        batch, keys = context.shape[0], context.shape[1]
        query, key = attn.to_q(hidden_states), attn.to_k(context)
        heads = attn.heads
        query = query.view(batch, -1, heads, query.shape[-1] // heads).transpose(1, 2)
        key = key.view(batch, -1, heads, key.shape[-1] // heads).transpose(1, 2)
        if getattr(attn, "norm_q", None) is not None:
            query, key = attn.norm_q(query), attn.norm_k(key)
        scores = (query.float() @ key.float().transpose(-1, -2)) * attn.scale
        if attention_mask is not None:
            mask = attn.prepare_attention_mask(attention_mask, keys, batch)
            scores = scores + mask.view(batch, heads, -1, keys).float()
        return scores.softmax(-1).mean(1)


class AttentionCapture:
    """Cross-attention probabilities of the chosen denoising steps, per layer, while the pipeline samples.

    `steps` are 1-based denoising steps; the denoiser is called once per step (CFG runs both branches in one
    batch, and only the conditional rows, the second half, are kept)."""

    def __init__(self, denoiser: torch.nn.Module, layers: list[str], steps: list[int], cfg: bool):
        self.denoiser, self.layers, self.steps, self.cfg = denoiser, layers, set(steps), cfg
        self.step = 0
        self.latent_size: tuple[int, int] = (0, 0)
        self.maps: dict[tuple[int, str], torch.Tensor] = {}
        self._originals: dict[str, object] = {}
        self._hook = None

    @property
    def recording(self) -> bool:
        return self.step in self.steps

    def record(self, layer: str, probabilities: torch.Tensor) -> None:
        if self.cfg:
            probabilities = probabilities[probabilities.shape[0] // 2 :]
        self.maps[(self.step, layer)] = probabilities.cpu()

    def __enter__(self) -> "AttentionCapture":
        modules = dict(self.denoiser.named_modules())
        for name in self.layers:
            self._originals[name] = modules[name].processor
            modules[name].set_processor(CaptureProcessor(modules[name].processor, self, name))

        def count(_module, args, kwargs):
            self.step += 1
            latents = args[0] if args else kwargs.get("sample", kwargs.get("hidden_states"))
            self.latent_size = tuple(latents.shape[-2:])

        self._hook = self.denoiser.register_forward_pre_hook(count, with_kwargs=True)
        return self

    def __exit__(self, *exc) -> None:
        modules = dict(self.denoiser.named_modules())
        for name, processor in self._originals.items():
            modules[name].set_processor(processor)
        self._hook.remove()


def cross_attention_layers(denoiser: torch.nn.Module) -> list[str]:
    """The cross-attention layers maps are read from: a UNet's decoder (up blocks), or every transformer block."""
    names = [name for name, module in denoiser.named_modules()
             if name.endswith("attn2") and hasattr(module, "set_processor")]
    decoder = [n for n in names if n.startswith("up_blocks.")]
    return decoder or names


@dataclass
class AttentionResult:
    output: str
    model: str
    prompt: str
    words: list[str]
    positions: dict[str, list[int]]  # word -> token positions it covers
    steps: list[int]
    grid: tuple[int, int]  # the maps' resolution (rows, columns)
    layers: list[str] = field(default_factory=list)


def token_positions(adapter, prompt: str, words: list[str], eos: int, tokens: int) -> dict[str, list[int]]:
    """Each chosen word's token positions in the prompt's tokenization (a word split into several tokens covers
    them all); `<end>` and `<padding>` name the end-of-text token and the padding after it."""
    ids = adapter.tokenize([prompt]).input_ids[0].tolist()  # as the family's encoding tokenizes it
    pieces = [re.sub(r"</w>|▁|Ġ", "", str(t)).lower() for t in adapter.tokenizer.convert_ids_to_tokens(ids)]
    found: dict[str, list[int]] = {}
    for word in words:
        if word == "<end>":
            found[word] = [eos]
            continue
        if word == "<padding>":
            found[word] = list(range(eos + 1, tokens))
            continue
        target = word.lower()
        for start in range(min(eos, len(pieces))):
            joined, end = "", start
            while end < eos and len(joined) < len(target):
                joined += pieces[end]
                end += 1
            if joined == target and pieces[start]:
                found[word] = list(range(start, end))
                break
        if word not in found:
            shown = " ".join(p for p in pieces[:eos] if p)
            raise UsageError(f"--words {word!r} is not a word of the prompt as the model tokenizes it ({shown!r}); "
                             "choose words of the prompt, or <end> or <padding>.")
    return found


FUNCTION_WORDS = {"a", "an", "the", "of", "on", "in", "at", "to", "up", "by", "for", "and", "or", "with", "from",
                  "into", "onto", "over", "under", "near", "its", "their", "his", "her", "is", "are", "as"}


def default_words(prompt: str) -> list[str]:
    """The prompt's content words (no articles, prepositions or conjunctions), then <end> and <padding>."""
    words = [w for w in re.findall(r"[A-Za-z]+", prompt) if w.lower() not in FUNCTION_WORDS][: MAX_WORDS - 2]
    return words + ["<end>", "<padding>"]


def default_steps(total: int) -> list[int]:
    return sorted({max(1, round(total * f)) for f in (0.25, 0.5, 0.75, 1.0)})


def attention_maps(prompt: str, output: Path, options: SampleOptions, runtime: Runtime, words: list[str] | None = None,
                   at_steps: list[int] | None = None) -> AttentionResult:
    """Sample PROMPT with the original and the enhanced embedding (`options.enhancer`, same seed), capturing the
    cross-attention maps of the chosen words at the chosen steps; write the labelled grid to OUTPUT (PNG) and
    OUTPUT.json."""
    if not prompt.strip():
        raise UsageError("dice attention needs a PROMPT with words to show; give one in quotes.")
    if output.suffix.lower() != ".png":
        raise UsageError(f"-o {output} must be a .png file (the grid of maps).")
    options.check()
    check_seeds(options.seed, 1)
    sidecar = output.with_name(output.name + ".json")
    prepared = prepare_analysis(InputData("PROMPT", None, [prompt]), options, [output, sidecar])
    ref, device, dtype = prepared.ref, runtime.device, runtime.dtype
    chosen = options.config(ref.family, ref.recipe)
    wanted = sorted(set(at_steps or default_steps(chosen.steps)))
    if wanted[0] < 1 or wanted[-1] > chosen.steps:
        raise UsageError(f"--at-steps {','.join(map(str, wanted))} must lie between 1 and --steps {chosen.steps}.")
    data = enhance_prompts(prepared, runtime, prepared_components(prepared))
    adapter = data.adapter
    native = adapter.default_size()
    chosen = replace(chosen, height=chosen.height or native, width=chosen.width or native)
    make_scheduler(chosen.scheduler, adapter.scheduler.config)
    words = words or default_words(prompt)
    eos = int(data.cond.eos_index[0])
    positions = token_positions(adapter, prompt, words, eos, data.cond.prompt_embeds.shape[1])
    layers = cross_attention_layers(adapter.denoiser)
    pipe = adapter.pipeline()
    images, maps = {}, {}
    for label, cond in (("original", data.cond), ("enhanced", data.enhanced)):
        with AttentionCapture(adapter.denoiser, layers, wanted, chosen.cfg > 1) as capture:
            images[label] = generate(adapter, cond.to(device, dtype), data.prepared.cfg_negative().to(device, dtype),
                                     chosen, [options.seed], pipe)[0]
        maps[label], grid, used = resolution_maps(capture, layers, chosen.height, chosen.width,
                                                  adapter.denoiser_name == "unet")
    picture = draw_grid(images, maps, positions, wanted, prompt)
    with atomic_path(output) as tmp:
        picture.save(tmp, format="PNG")
    result = AttentionResult(str(output), ref.given, prompt, words, positions, wanted, grid, used)
    with atomic_path(sidecar) as tmp:
        tmp.write_text(json.dumps(asdict(result), indent=1))
    return result


def prepared_components(prepared) -> tuple[str, ...]:
    from dicecli.families import adapter_class

    return adapter_class(prepared.ref.family).pipeline_components


def resolution_maps(capture: AttentionCapture, layers: list[str], height: int, width: int,
                    unet: bool) -> tuple[dict[int, torch.Tensor], tuple[int, int], list[str]]:
    """Per step, the [rows, cols, keys] map averaged over the layers of one resolution: a UNet's closest to 1/16 of
    the image side, a transformer's (one resolution) all."""
    by_size: dict[int, list[str]] = {}
    for (step, layer), probabilities in capture.maps.items():
        by_size.setdefault(probabilities.shape[1], [])
        if layer not in by_size[probabilities.shape[1]]:
            by_size[probabilities.shape[1]].append(layer)
    target = (height // 16) * (width // 16) if unet else max(by_size)
    size = min(by_size, key=lambda n: (abs(math.log(n / target)), -n))
    chosen = by_size[size]
    lat_h, lat_w = capture.latent_size
    scale = math.sqrt(lat_h * lat_w / size)
    rows, cols = round(lat_h / scale), round(lat_w / scale)
    out = {}
    for step in sorted(capture.steps):
        stacked = torch.stack([capture.maps[(step, layer)][0] for layer in chosen if (step, layer) in capture.maps])
        out[step] = stacked.mean(0).view(rows, cols, -1)
    return out, (rows, cols), chosen


def heatmap(values: torch.Tensor, image: Image.Image) -> Image.Image:
    """A map normalised to its own range, coloured and laid over the grey image, CELL pixels wide."""
    from matplotlib import colormaps

    v = (values - values.min()) / (values.max() - values.min()).clamp_min(1e-12)
    colour = (colormaps["jet"](v.numpy())[..., :3] * 255).astype("uint8")
    overlay = Image.fromarray(colour).resize((CELL, CELL), Image.Resampling.BILINEAR)
    base = image.convert("L").convert("RGB").resize((CELL, CELL), Image.Resampling.BILINEAR)
    return Image.blend(base, overlay, 0.6)


def draw_grid(images: dict[str, Image.Image], maps: dict[str, dict[int, torch.Tensor]], positions: dict[str, list[int]],
              steps: list[int], prompt: str) -> Image.Image:
    """Rows: original and enhanced at each chosen step; columns: the final image, then one map per word."""
    words = list(positions)
    header = 34
    canvas = Image.new("RGB", (LABEL + CELL * (len(words) + 1), header + CELL * 2 * len(steps)), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 2), prompt[:120], fill="black")
    for j, title in enumerate(["image"] + words):
        draw.text((LABEL + j * CELL + 3, 18), title[:15], fill="black")
    row = 0
    for label in ("original", "enhanced"):
        for step in steps:
            y = header + row * CELL
            draw.text((4, y + CELL // 2 - 6), f"{label}, step {step}", fill="black")
            canvas.paste(images[label].convert("RGB").resize((CELL, CELL), Image.Resampling.BILINEAR), (LABEL, y))
            for j, word in enumerate(words):
                values = maps[label][step][..., positions[word]].mean(-1)
                canvas.paste(heatmap(values, images[label]), (LABEL + (j + 1) * CELL, y))
            row += 1
    return canvas
