"""`dice enhance`: prompts or an embedding cache -> enhanced embedding cache (text encoder only)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
import torch

from dicecli import faults
from dicecli.cache import EMBEDDINGS_FORMAT, CacheWriter, new_header, storage_dtype, text_attrs, text_attrs_of
from dicecli.cachejob import CacheJob, run_cache_job
from dicecli.files import STDIO, check_output, refuse_stdio, check_stdout_takes_binary, check_writable, main_lock, write_to_stdout
from dicecli.method import enhance_conditioning
from dicecli.preparation import open_enhancer, prepare, read_input
from dicecli.runtime import Runtime
from dicecli.settings import EnhanceConfig, SampleConfig, SampleOptions


@dataclass
class EnhanceResult:
    output: str
    model: str
    enhancer: str
    alpha: float
    part: str
    negative: str
    prompts: int
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def enhance(source: str, output: str, options: SampleOptions, runtime: Runtime) -> EnhanceResult:
    """Enhance INPUT into OUTPUT with `options.enhancer` (and its model, strength, part and negative prompt); the
    batch size is `runtime.batch_size`, else the recipe's [enhance] batch_size, else dicecli's."""
    if options.alpha is not None:
        SampleConfig(alpha=options.alpha).check(None)
    chosen = open_enhancer(options.enhancer)
    if output == STDIO:
        refuse_stdio("-o")
        check_stdout_takes_binary("an HDF5 embedding cache")
    if output != STDIO:
        check_writable(Path(output))
        check_output(Path(output), [Path(source), chosen.path] if source != STDIO else [chosen.path])
    data = read_input(source)
    prepared = prepare(data, options, chosen, needs_model_for="Enhancing a prompts file")
    if output != STDIO:
        check_output(Path(output), prepared.input_paths)
    batch_size = EnhanceConfig.resolve(prepared.ref.family, prepared.ref.recipe,
                                       batch_size=runtime.batch_size).batch_size
    device, dtype, progress, note = runtime.device, runtime.dtype, runtime.progress, runtime.note
    notes: list[str] = []
    adapter = prepared.load(device, dtype, lambda message: (notes.append(message), note(message)))
    net = chosen.load(device)  # only the text encoder is ever loaded from the model
    ref, attrs = prepared.ref, data.attrs
    text = adapter.text
    header = new_header(
        EMBEDDINGS_FORMAT, family=ref.family, model=attrs["model"] if attrs else ref.given,
        model_resolved=attrs["model_resolved"] if attrs else ref.resolved,
        fingerprint=attrs["text_encoder_fingerprint"] if attrs else adapter.text_encoder_fingerprint(),
        dtype=storage_dtype(dtype) if attrs is None else attrs["dtype"], tokens=text.tokens, context_dim=text.width,
    ) | (text_attrs_of(attrs) if attrs else text_attrs(adapter))
    made_by = prepared.provenance
    header.update(enhancer=made_by.enhancer, enhancer_sha256=made_by.enhancer_sha256, alpha=made_by.alpha,
                  enhancer_trained_on=str(chosen.meta.get("trained_on", "")), enhanced_part=made_by.part)
    neg_cond = prepared.enhancer_negative()

    negative_fp32 = neg_cond.to(dtype=torch.float32)
    storage = torch.float16 if header["dtype"] == "float16" else None

    def fill(writer: CacheWriter, start: int, stop: int):
        for batch, batch_cond in prepared.batches(batch_size, start, stop):
            writer.append(batch, enhance_conditioning(net, batch_cond.to(device, torch.float32), negative_fp32,
                                                      made_by.alpha, made_by.part, storage))
            faults.point("enhance.batch")
            yield len(batch)

    def write(path: Path) -> None:
        plan = {"input": data.name, "prompts": data.prompts, "batch_size": batch_size,
                "header": {k: v for k, v in header.items() if k != "created"}}
        job = CacheJob(header, fill, len(data.prompts), batch_size, plan, desc="enhance",
                       finish=lambda writer: writer.append([prepared.negative], neg_cond, prefix="negative_"))
        run_cache_job(path, job, progress)

    if output == STDIO:
        write_to_stdout(write)
    else:
        with main_lock(Path(output), "Cache", wait=True):
            write(Path(output))
    return EnhanceResult(output, ref.given, str(chosen.path), made_by.alpha, made_by.part, prepared.negative,
                         len(data.prompts), notes)
