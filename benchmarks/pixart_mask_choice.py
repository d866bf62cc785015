"""How the enhancer should meet T5 on PixArt-alpha: measured on `tiny-pixart` (CPU, about 2 minutes).

Two choices (docs/models.md, "The mask decision, measured"): whether the first token is kept (T5 has no start-of-text token),
and which attention mask the enhanced embedding is used with: the prompt's own ("prompt": the
transformer never sees the padding tokens the enhancer writes) or one widened to all 120 tokens ("all").

For each of the four combinations this runs `dice distill` (in process, the same code as the command)
on the same data and seed, then measures the guidance error on held-out prompts: the mean
|eps(x_t, c') - eps_cfg| against the unguided |eps(x_t, c) - eps_cfg|, over several noise draws.

    python benchmarks/pixart_mask_choice.py --out benchmarks/results/pixart-mask-choice-cpu.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path

import torch
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import split_prompts, write_imagefolder  # noqa: E402  (the learning tests' data)

from dicecli.cli import app  # noqa: E402
from dicecli.enhancer import read_enhancer  # noqa: E402
from dicecli.families import load_adapter, pixart  # noqa: E402
from dicecli.method import apply_enhancer, guidance_error  # noqa: E402
from dicecli.refs import resolve_model  # noqa: E402


def dice(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exit_code:
        raise SystemExit(f"dice {' '.join(map(str, args))} failed: {result.output}")
    return result.output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seeds", default="0,1", help="training seeds")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    train, held_out = split_prompts()
    work = Path(tempfile.mkdtemp(prefix="pixart-mask-"))
    write_imagefolder(work / "data", train)
    dice("encode", "--images", work / "data", "-o", work / "latents.h5", "--model", "tiny-pixart", "--resolution", "32")
    adapter = load_adapter(resolve_model("tiny-pixart"), torch.device("cpu"), torch.float32)
    cond = adapter.encode(held_out).conditioning
    semantic = cond.attention_mask.bool()
    rows = []
    for (keep_first, mask), seed in itertools.product(itertools.product((True, False), ("prompt", "all")),
                                                      map(int, args.seeds.split(","))):
        pixart.TEXT.update(keep_first_token=keep_first, enhanced_mask=mask)
        out = work / f"e-{keep_first}-{mask}-{seed}.safetensors"
        dice("distill", "--model", "tiny-pixart", "--data", work / "latents.h5", "-o", out, "--work-dir", work / out.stem,
             "--steps", args.steps, "--batch-size", 8, "--lr", "5e-3", "--negative-prompts", "none", "--seed", seed,
             "--checkpoint-every", 1000, "--no-validate")
        enhancer, meta = read_enhancer(out)
        assert (meta["keep_first_token"], meta["enhanced_mask"]) == (keep_first, mask)
        errors = []
        for draw in range(4):
            x0 = torch.randn(len(held_out), 4, 16, 16, generator=torch.Generator().manual_seed(100 + draw)) * 0.8
            errors.append(guidance_error(adapter, enhancer, x0, cond, adapter.null(), 5.0, seed=draw))
        plain = sum(e[0] for e in errors) / len(errors)
        enhanced = sum(e[1] for e in errors) / len(errors)
        with torch.no_grad():
            new = apply_enhancer(enhancer, cond, adapter.null()).prompt_embeds
        cosine = torch.nn.functional.cosine_similarity(new, cond.prompt_embeds, dim=-1)
        row = {"keep_first_token": keep_first, "enhanced_mask": mask, "seed": seed, "unguided_error": round(plain, 5),
               "dice_error": round(enhanced, 5), "error_ratio": round(enhanced / plain, 4),
               "cosine_prompt_tokens": round(cosine[semantic].mean().item(), 4),
               "cosine_padding_tokens": round(cosine[~semantic].mean().item(), 4)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {}
    for keep_first, mask in itertools.product((True, False), ("prompt", "all")):
        ratios = [r["error_ratio"] for r in rows if (r["keep_first_token"], r["enhanced_mask"]) == (keep_first, mask)]
        summary[f"keep_first_token={keep_first}, enhanced_mask={mask}"] = round(sum(ratios) / len(ratios), 4)
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps({"model": "tiny-pixart", "steps": args.steps, "batch_size": 8, "lr": 5e-3,
                                        "loss": "l2", "held_out_prompts": len(held_out), "runs": rows,
                                        "mean_error_ratio": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
