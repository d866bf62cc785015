"""Write docs/toyworld.md and its figures from the recorded toy runs in scripts/toy/results/.

    python scripts/toy/write_report.py                  # regenerate the report from results/
    python scripts/toy/write_report.py --import DIR     # first store a GPU run (the folder run_gpu.sh report
                                                        # returns, with the distill folder's logs in it)

Importing computes the toy FID of every setting (clean-fid's Fréchet distance between the evaluator's
features of the samples and of ground-truth renders of the same prompts) from DIR/toy-features-*.npz
and stores the report with the FIDs, the oracle, the GD run and the distillation logs (every 10th
step) in results/; the features themselves are not kept. Nothing here samples or trains: every
number in the report comes from a recorded run.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "scripts" / "toy" / "results"
DOCS = ROOT / "docs"
TAG = "h200-2026-11-27"
REPORT = RESULTS / f"report-{TAG}.json"
ORACLE = RESULTS / f"oracle-{TAG}.json"
GD = RESULTS / f"gd-{TAG}.json"
RUNS = RESULTS / f"distill-runs-{TAG}.json"
BUILD_MODEL = RESULTS / f"build-model-{TAG}.json"
BUILD_EVALUATOR = RESULTS / f"build-evaluator-{TAG}.json"
EMA_CPU = RESULTS / "ema-cpu-2026-11-27.json"  # scripts/toy/guidance_error.py on two short CPU runs
ENHANCER_PARAMETERS = 1_312_000  # Enhancer.for_text at D = 256 (tests/test_toy_model.py checks it)
# name, `dice distill` options beyond the toy recipe's (scripts/toy/run_gpu.sh ABLATION)
ABLATION = {"reference": "--lr 2e-4 (the paper's)", "lr1e-3": "--lr 1e-3 (the toy recipe's)", "lr3e-3": "--lr 3e-3",
            "cosine": "--lr 1e-3 --lr-schedule cosine --warmup-steps 100",
            "ema": "--lr 1e-3 --ema 0.999", "logit-normal": "--lr 1e-3 --timesteps logit-normal",
            "batch256": "--lr 1e-3 --batch-size 256"}
# Rows of the recorded ablation that do not measure their setting: the ema run stopped before its end, and its
# checkpoint then held only the raw weights (checkpoints now also keep the average, enhancer-ema.safetensors).
NOT_MEASURED = {"ema"}
TABLE = [("unguided", "Unguided"), ("cfg5", "CFG w = 5"), ("cfg5-20nfe", "CFG w = 5, 10 steps"), ("dice", "DICE"),
         ("gd", "Guidance distillation (GD)"), ("cfg5-negative", "CFG w = 5 + negative prompt"),
         ("dice-negative", "DICE + negative prompt")]
SCHEDULERS = {"dpmsolver++": "DPM-Solver++", "pndm": "PNDM"}
SETS = {"held_out_pairs": "held-out colour–shape pairs", "held_out_phrasings": "held-out phrasings"}


# -- importing a GPU run --------------------------------------------------------------------------

def toy_fid(samples: np.ndarray, truth: np.ndarray) -> float:
    """Fréchet distance between two feature sets (clean-fid's formula)."""
    from cleanfid.fid import frechet_distance

    a, b = samples.astype(np.float64), truth.astype(np.float64)
    return max(0.0, float(frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))))


def import_run(run: Path) -> None:
    if not (run / "toy-report.json").is_file():
        raise SystemExit(f"{run} holds no toy-report.json; give the folder of a toy_report.py run.")
    report = json.loads((run / "toy-report.json").read_text())
    features = {}
    for path in sorted(run.glob("toy-features-*.npz")):
        with np.load(path) as f:
            features.update({k.replace("|", ":"): f[k] for k in f.files})
    for row in report["rows"]:
        row["toy_fid"] = toy_fid(features[row["features"]], features[f"truth:{row['prompt_set']}"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=1) + "\n")
    for source, target in (("oracle.json", ORACLE), ("gd.json", GD)):
        shutil.copyfile(run / source, target)
    runs = {}
    checkpoints = dict(line.split() for line in (run / "checkpoints.txt").read_text().splitlines() if len(line.split()) == 2)
    for name, checkpoint in checkpoints.items():
        step = int(checkpoint.rsplit("-", 1)[1])
        log = [json.loads(line) for line in (run / f"{name}-train_log.jsonl").read_text().splitlines() if line.strip()]
        log = [r for r in log if r["step"] <= step]
        runs[name] = {"steps": step, "train_s": round(log[-1]["time"] - log[0]["time"], 1),
                      "log": [{"step": r["step"], "loss": round(r["loss"], 5)} for r in log if r["step"] % 10 == 0]}
    RUNS.write_text(json.dumps(runs, indent=0) + "\n")
    shutil.copyfile(run / "toy-grid.png", DOCS / "toyworld-grid.png")
    print(REPORT)


# -- the formulas ---------------------------------------------------------------------------------

def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def closure(value: float, low: float, high: float) -> float:
    """Share of the gap from `low` (unguided) to `high` (CFG w = 5, 40 NFE) that `value` closes."""
    return (value - low) / (high - low)


# -- the report -----------------------------------------------------------------------------------

def rows_of(report: dict, prompt_set: str = "held_out_pairs", scheduler: str = "dpmsolver++") -> dict[str, dict]:
    return {r["name"]: r for r in report["rows"] if r["prompt_set"] == prompt_set and r["scheduler"] == scheduler}


def plots(rows: dict[str, dict], runs: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def save(fig, ax, xlabel: str, ylabel: str, title: str, name: str) -> None:
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(DOCS / name, dpi=120)
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for label, method, style in (("CFG w = 5", "cfg5", "o-"), ("DICE", "dice", "s-"), ("unguided", "unguided", "^--")):
        points = sorted((r["nfe"], r["alignment"]) for r in nfe_rows(rows, method))
        ax.plot([p[0] for p in points], [100 * p[1] for p in points], style, label=label)
    save(fig, ax, "NFE (denoiser evaluations per image)", "alignment (%)", "Toy world: alignment vs NFE",
         "toyworld-nfe.png")

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    points = alphas(rows)
    ax.plot([a for a, _ in points], [100 * s for _, s in points], "s-", label="DICE, 20 NFE")
    ax.axhline(100 * rows["cfg5"]["alignment"], color="C0", ls=":", label="CFG w = 5, 40 NFE")
    save(fig, ax, "alpha (enhancer strength)", "alignment (%)", "Toy world: enhancer strength", "toyworld-alpha.png")

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name in ("reference", "lr1e-3", "lr3e-3", "negative"):
        steps = np.array([r["step"] for r in runs[name]["log"]])
        loss = np.convolve([r["loss"] for r in runs[name]["log"]], np.ones(5) / 5, mode="valid")
        ax.plot(steps[: len(loss)], loss, label=name)
    save(fig, ax, "step (batch 128)", "L1 DICE loss (smoothed)", "Toy world: distillation loss", "toyworld-loss.png")


def nfe_rows(rows: dict[str, dict], method: str) -> list[dict]:
    """The step sweep of one method, with its Table 1 row (20 steps)."""
    return [rows[method]] + [r for name, r in rows.items() if name.startswith(f"{method}-") and name.split("-")[-1].isdigit()]


def alphas(rows: dict[str, dict]) -> list[tuple[float, float]]:
    return sorted((r["alpha"], r["alignment"]) for n, r in rows.items() if n == "dice" or n.startswith("dice-alpha"))


def table(w, rows: dict[str, dict], extra: dict[str, dict] | None = None) -> None:
    low, high = rows["unguided"]["alignment"], rows["cfg5"]["alignment"]
    extra = extra or {}
    head = "| method | NFE | alignment | gap closed | toy FID | sampling, 1 GPU |"
    w(head + (" trainable parameters | training |" if extra else ""))
    w("|---|---:|---:|---:|---:|---:|" + ("---:|---:|" if extra else ""))
    for name, title in TABLE:
        if name not in rows:
            continue
        r = rows[name]
        gap = f"{100 * closure(r['alignment'], low, high):.0f} %" if not r["negative_prompt"] else "–"
        line = f"| {title} | {r['nfe']} | {pct(r['alignment'])} | {gap} | {r['toy_fid']:.2f} | {r['seconds']:.2f} s |"
        if extra:
            e = extra.get(name, {})
            line += f" {e.get('parameters', '–')} | {e.get('training', '–')} |"
        w(line)
    w("")


def write() -> str:
    report = json.loads(REPORT.read_text())
    oracle, gd, runs = json.loads(ORACLE.read_text()), json.loads(GD.read_text()), json.loads(RUNS.read_text())
    model, evaluator = json.loads(BUILD_MODEL.read_text()), json.loads(BUILD_EVALUATOR.read_text())
    rows = rows_of(report)
    plots(rows, runs)
    sets = report["prompt_sets"]
    low, high = rows["unguided"]["alignment"], rows["cfg5"]["alignment"]
    dice, cfg = rows["dice"], rows["cfg5"]
    dice_closed = closure(dice["alignment"], low, high)
    oracle_closed = closure(oracle["oracle"], oracle["unguided"], oracle["cfg5"])
    fid_ok = dice["toy_fid"] <= 1.1 * cfg["toy_fid"]
    reference = runs["lr1e-3"]
    out: list[str] = []
    w = out.append
    w("# The toy world: DICE measured end to end\n")
    w("<!-- Written by scripts/toy/write_report.py from scripts/toy/results/; do not edit by hand. -->\n")
    w("The toy world (`dicecli/plugins/toy/world.py`) is the project's offline stand-in for Stable Diffusion: "
      "procedural 64 × 64 scenes of one or two shapes with captions, a small SD1.5-family pipeline trained "
      "from scratch on them (the model `toy`), and an attribute classifier (the evaluator) that reads the "
      "background and, per position, whether an object is there and its shape, colour and size. "
      "**Alignment** is the share of the attributes a prompt states that the evaluator finds in the image; "
      "each object the prompt names is matched to one detected object that shows its stated shape or colour, "
      "and its position and size count only for that object. "
      "**Toy FID** is the Fréchet distance between the evaluator's 256-d penultimate features of the samples "
      "and of ground-truth renders of the same prompts.\n")

    w("## The model and the judge\n")
    te = model["text_encoder"]
    w(f"- **Text encoder**: a 2-layer CLIP text transformer, width {te['width']}, over a word-level tokenizer of "
      f"the world's vocabulary; pretrained for {te['pretrain_steps']:,} steps to state each training caption's "
      f"attributes from its pooled output (accuracy {pct(model['text_pretrain']['accuracy'])}), then frozen, as "
      "CLIP is frozen in Stable Diffusion: the UNet receives bound, semantic token states.")
    w(f"- **UNet**: `UNet2DConditionModel`, {model['unet_parameters']:,} parameters, cross-attention width "
      f"{te['width']}, trained for {model['unet']['steps']:,} steps × batch 256 on 100,000 training scenes with "
      "10 % empty captions; the VAE is the previous build's (it depends on neither text nor captions). "
      "Shipped in float16 in `dicecli/plugins/toy/model/`.")
    from dicecli.plugins.toy.world import PAIR_PATTERNS, SINGLE_PATTERNS

    patterns = SINGLE_PATTERNS + PAIR_PATTERNS
    held = sum(p[1] for p in patterns)
    w(f"- **Captions**: {len(patterns)} phrasing patterns with the synonyms a user types (\"crimson\", \"disc\", "
      f"\"rhombus\", \"in the middle\", \"gray canvas\", …). {len(patterns) - held} patterns make the training "
      f"captions; {held} (\"a star, "
      "colored red, at the top, grey background\", \"dark backdrop with a small green disc\", \"the star is red "
      "and sits on the left\", \"draw a large triangle in orange\", two objects joined by a comma) never appear "
      "in training and form the held-out phrasings set.")
    w(f"- **Evaluator**: trained ({evaluator['steps']:,} steps) on renders of *every* colour–shape pair (held out "
      "from the generator, not from the judge). Checked on fresh ground-truth renders of the evaluation prompts "
      "and, as a floor, on images of random objects at all five positions:\n")
    w("| prompt set | distinct prompts | alignment of ground-truth renders | alignment of random clutter |")
    w("|---|---:|---:|---:|")
    for name, s in sets.items():
        w(f"| {SETS[name]} | {s['prompts']:,} | {pct(s['truth_alignment'])} | {pct(s['clutter_alignment'])} |")
    w("")
    w("Each prompt set holds distinct prompts (`world.evaluation_set`): the held-out-pairs prompts each name a "
      "colour–shape pair no training scene shows, written in training phrasings; the held-out-phrasings prompts "
      "name seen pairs in the five unseen patterns. One image per prompt, seed = prompt index.\n")

    w(f"## Table 1 (DPM-Solver++, {sets['held_out_pairs']['prompts']:,} held-out-pair prompts)\n")
    dice_training = f"{reference['steps']:,} steps × 128, {reference['train_s']:.0f} s"
    extra = {"dice": {"parameters": f"{ENHANCER_PARAMETERS:,}", "training": dice_training},
             "dice-negative": {"parameters": f"{ENHANCER_PARAMETERS:,}",
                               "training": f"{runs['negative']['steps']:,} steps × 128, {runs['negative']['train_s']:.0f} s"},
             "gd": {"parameters": f"{gd['trainable_parameters']:,}",
                    "training": f"{gd['steps']:,} steps × {gd['batch_size']}, {gd['train_s']:.0f} s"}}
    table(w, rows, extra)
    w(f"Sampling with `dice sample`'s default, DPM-Solver++, 20 steps; {report['device']}, float16, batches of "
      f"{report['batch']}. *Gap closed* = (method − unguided) / (CFG w = 5 at 40 NFE − unguided). The negative-prompt "
      f"rows use, for prompt i, the caption of scene i of `ToyWorld(seed={report['negative_seed']})` (the toy "
      "vocabulary has no \"blurry, bad quality\": its negatives are other scenes), and that enhancer is distilled "
      "with the toy negative corpus (`scripts/toy/toy_negatives.py`, null share 0.2).\n")
    w(f"The enhancers are distilled by `dice distill` on a latent cache of 20,000 training scenes (`toy` recipe: "
      f"w = 5, L1, t ~ U{{0..999}}, lr 1e-3, seed 0), for {reference['steps']:,} steps × 128: the ablation's runs "
      "and GD trained side by side on one GPU and were stopped by the time limit of one command (`run_gpu.sh "
      "distill`), so their training times are under that sharing. GD "
      f"(`scripts/toy/guidance_distill.py`) fine-tunes the whole UNet, guidance scale as an input (w ~ U[1, 8], "
      f"sampled at w = {report['gd_scale']:g}), lr 1e-4, on the same cache. The shipped reference enhancer "
      "`dicecli/plugins/toy/toy-dice.safetensors` (`--enhancer toy`) is the DICE row's, stored in float16.\n")

    w("## Targets\n")
    w("| target | measured | |")
    w("|---|---:|---|")
    w(f"| DICE closes ≥ 80 % of the gap (20 NFE vs CFG at 40 NFE) | {100 * dice_closed:.0f} % | "
      f"{'met' if dice_closed >= 0.8 else 'missed'} |")
    w(f"| DICE's toy FID ≤ CFG's + 10 % | {dice['toy_fid']:.2f} vs {cfg['toy_fid']:.2f} (limit {1.1 * cfg['toy_fid']:.2f}) | "
      f"{'met' if fid_ok else 'missed'} |")
    w(f"| DICE's closure ≥ 90 % of the per-prompt oracle's | {100 * dice_closed:.0f} % vs {100 * oracle_closed:.0f} % "
      f"({100 * dice_closed / oracle_closed:.0f} %) | {'met' if dice_closed >= 0.9 * oracle_closed else 'missed'} |")
    w("")
    w("**The per-prompt oracle** (`scripts/toy/oracle.py`) replaces the enhancer by a free offset of every "
      "prompt's embedding, optimised with the DICE objective on 32 fresh renders of each evaluation prompt "
      f"itself ({oracle['steps']:,} steps × {oracle['batch_size']}, lr {oracle['lr']:g}, {oracle['train_s']:.0f} s), "
      "and is scored on the same protocol: unguided "
      f"{pct(oracle['unguided'])}, CFG {pct(oracle['cfg5'])}, oracle {pct(oracle['oracle'])} "
      f"({100 * oracle_closed:.0f} % of the gap). An enhancer maps every prompt through one network, so a fully trained "
      f"oracle bounds it; DICE reaches {100 * dice_closed / oracle_closed:.0f} % of the "
      "oracle's closure. What keeps both below CFG is how far one unguided evaluation with a changed embedding "
      "can follow the difference of two evaluations on this model. The oracle was trained for a few minutes only; "
      "a longer run could raise it (not measured).\n")

    pndm = rows_of(report, scheduler="pndm")
    w("## PNDM (the toy pipeline's own scheduler)\n")
    table(w, pndm)
    def versus(a: float, b: float) -> str:
        return "ahead of" if a > b else "behind"

    w(f"At equal NFE (20), CFG with 10 PNDM steps ({pct(pndm['cfg5-20nfe']['alignment'])}) is "
      f"{versus(pndm['cfg5-20nfe']['alignment'], pndm['dice']['alignment'])} DICE ({pct(pndm['dice']['alignment'])}); "
      f"with 10 DPM-Solver++ steps ({pct(rows['cfg5-20nfe']['alignment'])}) **CFG is "
      f"{versus(rows['cfg5-20nfe']['alignment'], dice['alignment'])} DICE** ({pct(dice['alignment'])}). DPM-Solver++ "
      "needs few steps on this small model, which takes away what DICE gains by halving the evaluations.\n")

    phr = rows_of(report, "held_out_phrasings")
    w(f"## Held-out phrasings ({sets['held_out_phrasings']['prompts']} prompts, DPM-Solver++)\n")
    table(w, phr)
    w(f"Phrasings never seen in training lower every method (unguided {pct(phr['unguided']['alignment'])} vs "
      f"{pct(low)}; CFG {pct(phr['cfg5']['alignment'])} vs {pct(high)}); DICE closes "
      f"{100 * closure(phr['dice']['alignment'], phr['unguided']['alignment'], phr['cfg5']['alignment']):.0f} % of "
      f"their gap ({100 * dice_closed:.0f} % on held-out pairs): the enhancer works on the text encoder's states, "
      "whatever the wording.\n")

    w("## Per attribute (DPM-Solver++, held-out pairs)\n")
    kinds = ("background", "shape", "color", "size", "position")
    w("| method | " + " | ".join(kinds) + " |")
    w("|---|" + "---:|" * len(kinds))
    for name, title in TABLE:
        if name in rows:
            w(f"| {title} | " + " | ".join(pct(rows[name]["attributes"].get(k, float("nan"))) for k in kinds) + " |")
    w("")

    gaps = {k: rows["cfg5"]["attributes"][k] - dice["attributes"][k] for k in kinds}
    widest = sorted(gaps, key=gaps.get, reverse=True)[:2]
    w(f"DICE's shortfall against CFG is largest on {widest[0]} ({100 * gaps[widest[0]]:.1f} points) and {widest[1]} "
      f"({100 * gaps[widest[1]]:.1f} points). With a negative prompt, both methods lose alignment "
      f"(CFG {pct(rows['cfg5-negative']['alignment'])}, DICE {pct(rows['dice-negative']['alignment'])}): the toy "
      "negatives are captions of other scenes, which often share a colour, shape or background with the prompt, "
      "so steering away from them also steers away from what the prompt states.\n")

    w("## Alignment vs NFE\n")
    w("![alignment vs NFE](toyworld-nfe.png)\n")
    w("| steps | unguided | CFG w = 5 | DICE |")
    w("|---:|---:|---:|---:|")
    sweep = {m: {r["steps"]: r["alignment"] for r in nfe_rows(rows, m)} for m in ("unguided", "cfg5", "dice")}
    for steps in sorted(sweep["dice"]):
        w(f"| {steps} | {pct(sweep['unguided'][steps])} | {pct(sweep['cfg5'][steps])} ({2 * steps} NFE) | "
          f"{pct(sweep['dice'][steps])} |")
    w("")

    w("## Enhancer strength (alpha)\n")
    w("![alpha sweep](toyworld-alpha.png)\n")
    w("| alpha | " + " | ".join(f"{a:g}" for a, _ in alphas(rows)) + " |")
    w("|---|" + "---:|" * len(alphas(rows)))
    w("| alignment | " + " | ".join(pct(s) for _, s in alphas(rows)) + " |")
    w("")
    w(f"DICE + CFG w = 2 (40 NFE): {pct(rows['dice+cfg2']['alignment'])}.\n")

    w("## Distillation settings\n")
    w("Each row is a `dice distill` run with the toy recipe and the options shown, scored at the Table 1 "
      "setting; all ran side by side on one GPU and were stopped by the same time limit, so they are "
      "compared at equal samples (1,000 steps × 128, or 500 × 256).\n")
    w("| run | options | steps | alignment | gap closed |")
    w("|---|---|---:|---:|---:|")
    for name, options in ABLATION.items():
        r = rows[f"ablation:{name}"]
        if name in NOT_MEASURED:
            w(f"| {name} | `{options}` | {runs[name]['steps']:,} | not measured | – |")
            continue
        w(f"| {name} | `{options}` | {runs[name]['steps']:,} | {pct(r['alignment'])} | "
          f"{100 * closure(r['alignment'], low, high):.0f} % |")
    w("")
    spread = [rows[f"ablation:{n}"]["alignment"] for n, options in ABLATION.items() if n not in NOT_MEASURED]
    w(f"At this budget every setting lands within {100 * (max(spread) - min(spread)):.1f} points: with DICE "
      "already at the oracle, neither the learning rate, its schedule, the timestep distribution nor the batch "
      "moves alignment measurably, so the defaults stay (the paper's for real models; lr 1e-3 in the toy "
      "recipe). The `ema` row is not measured: its run stopped before its end, and the "
      "checkpoint it left held the raw weights (the same as `lr1e-3`'s), not the average. A cosine schedule stopped at a third "
      "of its length is not a finished cosine run either. Both options are in `dice distill` "
      "(`--ema`, `--lr-schedule`, `--warmup-steps`, `--timesteps`) for runs that can finish.\n")
    if EMA_CPU.exists():
        ema = json.loads(EMA_CPU.read_text())
        runs_cpu = ema["enhancers"]
        first = next(iter(runs_cpu.values()))["settings"]
        w(f"**EMA, measured on a CPU instead.** Two `dice distill` runs of {first['steps']} steps × "
          f"{first['batch_size']} (lr {first['lr']:g}, a 2,048-scene latent cache), without and with `--ema`, scored "
          f"by the guidance error on the first {ema['prompts']} held-out-pair prompts "
          "(`scripts/toy/guidance_error.py`: mean |ε − ε_CFG| on fresh renders, two noise seeds):\n")
        w("| run | EMA decay | guidance error | cut vs unguided |")
        w("|---|---:|---:|---:|")
        w(f"| unguided | – | {ema['unguided']:.4f} | – |")
        for name, r in runs_cpu.items():
            w(f"| {name} | {r['settings']['ema'] or '–'} | {r['error']:.4f} | "
              f"{100 * (1 - r['error'] / ema['unguided']):.1f} % |")
        w("")
    w("![distillation loss](toyworld-loss.png)\n")

    w("## Samples\n")
    w("First prompts of the held-out-pairs set; columns: a ground-truth render, then Table 1's settings.\n")
    w("![samples](toyworld-grid.png)\n")
    w("| row | prompt |")
    w("|---:|---|")
    for i, p in enumerate(sets["held_out_pairs"]["examples"]):
        w(f"| {i + 1} | {p} |")
    w("")

    w("## Reproducing\n")
    w(f"On one GPU ({model['device']} here), with diffusers installed, each command within 10 minutes:\n")
    w("```bash\nscripts/toy/run_gpu.sh build                 # evaluator and model side by side (~8 min)\n"
      "scripts/toy/run_gpu.sh install BUILD         # put them in dicecli/plugins/toy/\n"
      "scripts/toy/run_gpu.sh distill               # ablation, GD, oracle side by side\n"
      "scripts/toy/run_gpu.sh report DISTILL        # every setting of this page\n"
      "python scripts/toy/write_report.py --import REPORT_DIR\n```\n")
    w(f"Seeds: world 0 (training scenes), 1 (evaluator check); text encoder 0, its pretraining 3, UNet 2; "
      f"distillation seed 0; GD seed {gd['seed']}; evaluation sets 7 (held-out pairs) and 8 (held-out phrasings); "
      f"negatives {report['negative_seed']}; ground-truth renders {report['truth_seed']}. A full rebuild (VAE "
      "included: `build_toy.py` without `--reuse`) takes about 10 minutes on one GPU. Training stages are "
      "bounded by time unless `--steps-*` are given; this build's steps are in `scripts/toy/results/`.\n")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--import", dest="run", type=Path, default=None)
    args = parser.parse_args()
    DOCS.mkdir(exist_ok=True)
    if args.run:
        import_run(args.run)
    (DOCS / "toyworld.md").write_text(write())
    print(DOCS / "toyworld.md")


if __name__ == "__main__":
    main()
