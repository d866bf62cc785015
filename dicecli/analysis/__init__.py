"""The paper's analyses of what an enhancer changes, and where (its section 4.3), and trigger words beyond it.

`embeddings` (`dice inspect`): the semantic and padding parts of original vs enhanced embeddings;
`attention` (`dice attention`): the denoiser's cross-attention maps per token, original vs enhanced;
`triggers` (`dice trigger`): a suffix of real words whose plain encoding moves the embedding as the enhancer does.
Partial enhancement and the strength sweep live where sampling does (`dicecli.method`, `dicecli.sample`), and the
page that shows it all beside `dice eval`'s table in `dicecli.reportpage`. Details: docs/analyses.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dicecli.enhancer import Enhancer
    from dicecli.families import Conditioning, FamilyAdapter
    from dicecli.preparation import InputData, Prepared
    from dicecli.runtime import Runtime
    from dicecli.settings import SampleOptions


@dataclass
class EnhancedPrompts:
    """Prompts with their original and enhanced conditioning, on the model's device, in float32."""

    prepared: "Prepared"
    adapter: "FamilyAdapter"
    enhancer: "Enhancer"
    cond: "Conditioning"
    enhanced: "Conditioning"
    negative: "Conditioning"  # the enhancer's second input

    @property
    def prompts(self) -> list[str]:
        return self.prepared.input.prompts


def prepare_analysis(data: "InputData", options: "SampleOptions", outputs: list[Path] = ()) -> "Prepared":
    """The analyses' preparation: the same path as `dice sample` and `dice enhance` (`dicecli.preparation`), so the
    same files are refused in the same sentences; a cache that is already enhanced has no original to compare.
    `outputs` must be writable and replace none of the inputs. Nothing is loaded yet."""
    from dicecli.distributed import launched_world
    from dicecli.errors import UsageError
    from dicecli.files import check_output, check_writable
    from dicecli.preparation import open_enhancer, prepare
    from dicecli.settings import SampleConfig

    if launched_world() > 1:  # one prompt set, one model: nothing to share out, and one set of files to write
        raise UsageError("The analyses (dice inspect, attention, trigger) run as one process; run them without "
                         "torchrun or accelerate launch.")
    if options.alpha is not None:
        SampleConfig(alpha=options.alpha).check(None)
    if data.enhanced_by:
        raise UsageError(f"{data.name} is already enhanced (with {data.enhanced_by}); give the prompts or the plain "
                         "cache from `dice encode`, so the original embeddings can be compared.")
    for path in outputs:
        check_writable(path)
    prepared = prepare(data, options, open_enhancer(options.enhancer), needs_model_for="This analysis of prompts")
    for path in outputs:
        check_output(path, prepared.input_paths)
    return prepared


def output_paths(base: "Path | None", suffixes: tuple[str, ...]) -> list[Path]:
    """BASE + each suffix (none without BASE): an analysis writes its files beside each other."""
    if base is not None and base.name in ("", ".", ".."):
        from dicecli.errors import UsageError

        raise UsageError(f"-o {base} names a folder; give a base name for the files, e.g. {base / 'inspect'}.")
    return [base.with_name(base.name + suffix) for suffix in suffixes] if base else []


def enhance_prompts(prepared: "Prepared", runtime: "Runtime", components: tuple[str, ...] = ()) -> EnhancedPrompts:
    """Load the model (the text side, and `components`) and the enhancer; every prompt's c and c' in float32."""
    import torch

    from dicecli.method import enhance_conditioning

    device = runtime.device
    adapter = prepared.load(device, runtime.dtype, runtime.note)
    if components:
        adapter.require(*components)
    net = prepared.enhancer.load(device)
    with torch.no_grad():
        cond = prepared.conditioning().to(device, torch.float32)
        negative_cond = prepared.enhancer_negative().to(device, torch.float32)
    enhanced = enhance_conditioning(net, cond, negative_cond, prepared.alpha)
    return EnhancedPrompts(prepared, adapter, net, cond, enhanced, negative_cond)
