"""Write docs/toyworld.md and its figures from the recorded toy runs in scripts/toy/results/.

    python scripts/toy/write_report.py                       # regenerate the report from results/
    python scripts/toy/write_report.py --import-gpu DIR      # first store a run of run_gpu_report.sh
    python scripts/toy/write_report.py --import-cpu DIR      # ... or of toy_report.py --table-only on a CPU

Importing a GPU run computes the toy FID of every setting (the evaluator's penultimate features of
the samples against those of ground-truth renders of the same prompts, clean-fid's Fréchet
distance) from DIR/toy-features*.npz, and stores the report with the FIDs in results/; the
features themselves are not kept (17 MB). Nothing here samples or trains: every number in the
report comes from a recorded run.
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
GPU_REPORT = RESULTS / "report-h200-2026-11-26.json"
CPU_REPORT = RESULTS / "report-cpu-2026-11-26.json"
INVESTIGATION = RESULTS / "investigate-h100-2026-11-26.jsonl"
CEILING = [RESULTS / "ceiling-h200-2026-11-26.jsonl", RESULTS / "ceiling-long-h200-2026-11-26.jsonl"]
EARLY_RUNS = [RESULTS / "dice-h100-2026-11-26-lr2e-4.jsonl", RESULTS / "dice-h100-2026-11-26-lr1e-3.jsonl"]
BUILD = RESULTS / "build-h100-2026-11-26.json"
REBUILD = RESULTS / "rebuild-h200-2026-11-26.json"
TRAIN_LOGS = {"null prompt": RESULTS / "toy-dice-train_log-h200-2026-11-26.jsonl",
              "negative corpus": RESULTS / "toy-dice-negative-train_log-h200-2026-11-26.jsonl"}
TABLE = [("unguided", "Unguided"), ("cfg5", "CFG w = 5"), ("cfg5-20nfe", "CFG w = 5, 10 steps"),
         ("dice", "DICE"), ("cfg5-negative", "CFG w = 5 + negative prompt"),
         ("dice-negative", "DICE + negative prompt")]


def import_run(run: Path, target: Path) -> None:
    from cleanfid.fid import frechet_distance

    report = json.loads((run / "toy-report.json").read_text())
    features = {}
    for name in ("toy-features.npz", "toy-features-nfe.npz"):
        if (run / name).exists():
            with np.load(run / name) as f:
                features.update({k: f[k].astype(np.float64) for k in f.files})
    if features:
        truth = features["truth"]
        mu, sigma = truth.mean(0), np.cov(truth, rowvar=False)
        for row in report["rows"]:
            if row["name"] in features:
                x = features[row["name"]]
                row["toy_fid"] = max(0.0, float(frechet_distance(x.mean(0), np.cov(x, rowvar=False), mu, sigma)))
    target.write_text(json.dumps(report, indent=1) + "\n")
    if (run / "toy-grid.png").exists():
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(run / "toy-grid.png", DOCS / "toyworld-grid.png")
    print(target)


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def closure(value: float, low: float, high: float) -> str:
    return f"{100 * (value - low) / (high - low):.0f} %"


def nfe_curves(rows: dict[str, dict]) -> dict[str, dict[int, float]]:
    """method -> {NFE: alignment} over the step sweep (and the Table 1 settings without alpha or negatives)."""
    curves: dict[str, dict[int, float]] = {"unguided": {}, "dice": {}, "cfg5": {}}
    for r in rows.values():
        prefix, _, suffix = r["name"].partition("-")
        if prefix in curves and (suffix == "" or suffix.isdigit() or suffix == "20nfe"):
            curves[prefix][r["nfe"]] = r["alignment"]
    return curves


def plots(rows: dict[str, dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def figure():
        return plt.subplots(figsize=(5.5, 3.6))

    def save(fig, ax, xlabel: str, ylabel: str, title: str, name: str) -> None:
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(DOCS / name, dpi=120)
        plt.close(fig)

    fig, ax = figure()
    for method, prefix, style in (("CFG w = 5", "cfg5", "o-"), ("DICE", "dice", "s-"), ("unguided", "unguided", "^--")):
        points = sorted(nfe_curves(rows)[prefix].items())
        ax.plot([p[0] for p in points], [100 * p[1] for p in points], style, label=method)
    save(fig, ax, "NFE (denoiser evaluations per image)", "alignment (%)",
         "Toy world: alignment vs NFE (held-out prompts)", "toyworld-nfe.png")

    fig, ax = figure()
    ax.plot([a for a, _ in _alphas(rows)], [100 * s for _, s in _alphas(rows)], "s-", label="DICE, 20 NFE")
    ax.axhline(100 * rows["cfg5"]["alignment"], color="C0", ls=":", label="CFG w = 5, 40 NFE")
    save(fig, ax, "alpha (enhancer strength)", "alignment (%)", "Toy world: enhancer strength", "toyworld-alpha.png")

    fig, ax = figure()
    for label, path in TRAIN_LOGS.items():
        log = jsonl(path)
        steps, loss = np.array([r["step"] for r in log]), np.array([r["loss"] for r in log])
        smooth = np.convolve(loss, np.ones(10) / 10, mode="valid")  # the log keeps every 10th step
        ax.plot(steps[: len(smooth)], smooth, label=f"c_neg: {label}")
    save(fig, ax, "step (batch 128)", "L1 DICE loss (smoothed over 100 steps)", "Toy world: distillation loss",
         "toyworld-loss.png")


def write() -> str:
    gpu = json.loads(GPU_REPORT.read_text())
    rows = {r["name"]: r for r in gpu["rows"]}
    cpu_report = json.loads(CPU_REPORT.read_text()) if CPU_REPORT.exists() else {"rows": [], "device": "", "prompts": 0}
    cpu, cpu_device = {r["name"]: r for r in cpu_report["rows"]}, cpu_report["device"]
    DOCS.mkdir(exist_ok=True)
    plots(rows)
    low, high = rows["unguided"]["alignment"], rows["cfg5"]["alignment"]
    dice = rows["dice"]
    fid_ok = dice["toy_fid"] <= 1.1 * rows["cfg5"]["toy_fid"]
    closed = (dice["alignment"] - low) / (high - low)
    out = []
    w = out.append
    w("# The toy world: DICE measured end to end\n")
    w("<!-- Written by scripts/toy/write_report.py from scripts/toy/results/; do not edit by hand. -->\n")
    w("The toy world (`dicecli/toyworld.py`) is the project's offline stand-in for Stable Diffusion: "
      "procedural 64 × 64 scenes of one or two shapes with captions, a small SD1.5-family pipeline trained "
      "from scratch on them (the built-in model `toy`), and an attribute classifier that reads the "
      "background and each object's shape, colour, size and position back from an image. "
      "**Alignment** is the share of the attributes a prompt states that the classifier finds; "
      "**toy FID** is the Fréchet distance between the classifier's 256-d penultimate features of the "
      "samples and of ground-truth renders of the same prompts.\n")
    w(f"Every number below comes from recorded runs on an {gpu['device']} (PyTorch {gpu['torch']}, "
      f"{gpu['dtype']} sampling): `scripts/toy/run_gpu_report.sh distill` made the enhancers and "
      f"`scripts/toy/run_gpu_report.sh report` ran every sampling setting, over **{gpu['prompts']:,} held-out prompts** "
      f"(`ToyWorld(seed={gpu['eval_seed']}, held_out=True)`: every prompt names at least one colour–shape pair "
      "that never appears in training), one image per prompt with seed = prompt index, DPM-Solver++. "
      f"On ground-truth renders of these prompts the classifier scores {pct(gpu['truth_alignment'])}: "
      "that is the ceiling of the alignment scale.\n")
    w("The enhancers are distilled by `dice distill` itself: 3,000 steps × batch 128 (384k samples) on a latent "
      "cache of 20,000 training scenes, AdamW lr 1e-3 (the reference 2e-4 converges slower here, see below), "
      "w = 5, L1, t ~ U{0..999}, seed 0. The shipped reference enhancer `dicecli/models/toy-dice.safetensors` "
      "(`--enhancer toy`) is the null-prompt one, stored in float16.\n")

    w("## Table 1 layout\n")
    cpu_note = f" | wall time, {cpu_device.replace(' (', ', ').rstrip(')')}, {cpu_report['prompts']} prompts" if cpu else ""
    w(f"| method | NFE | alignment | gap closed | toy FID | wall time, {gpu['device']}, {gpu['prompts']} prompts{cpu_note} |")
    w("|---|---:|---:|---:|---:|---:|" + ("---:|" if cpu else ""))
    for name, title in TABLE:
        r = rows[name]
        gap = closure(r["alignment"], low, high) if not r["negative_prompt"] else "–"
        extra = f" {cpu[name]['seconds']:.1f} s |" if cpu and name in cpu else (" – |" if cpu else "")
        w(f"| {title} | {r['nfe']} | {pct(r['alignment'])} | {gap} | {r.get('toy_fid', float('nan')):.2f} | "
          f"{r['seconds']:.2f} s |{extra}")
    w("")
    w("*Gap closed* = (method − unguided) / (CFG w = 5 at 40 NFE − unguided). The negative-prompt rows use, "
      f"for prompt i, the caption of scene i of `ToyWorld(seed={gpu['negative_seed']})` as the negative prompt "
      "(the toy vocabulary has no \"blurry, bad quality\"; its negatives are other scenes). That enhancer is "
      "distilled with the toy negative corpus (`scripts/toy/toy_negatives.py`: 116 training captions, null share 0.2).\n")
    verdict = "met" if closed >= 0.9 and fid_ok else "not met"
    w(f"**Target (≥ 90 % of the gap at 20 NFE, FID ≤ CFG's + 10 %): {verdict}.** DICE at 20 NFE closes "
      f"{100 * closed:.0f} % of the alignment gap ({pct(low)} → {pct(dice['alignment'])}, CFG {pct(high)}); "
      f"its toy FID is {dice['toy_fid']:.2f} against CFG's {rows['cfg5']['toy_fid']:.2f} "
      f"({'within' if fid_ok else 'outside'} +10 %). For scale, the paper's CLIP-score gap closure on real "
      "models is 55–86 %. The investigation below shows that the toy model caps it: even an embedding "
      "optimised freely for each evaluation prompt stays well short of 90 %.\n")
    on_gpu = rows["cfg5"]["seconds"] / rows["dice"]["seconds"]
    w(f"Wall time: the toy UNet is so small that the {gpu['device']} is launch-bound at batch 256, so CFG's doubled "
      f"batch costs only {on_gpu:.2f}× DICE's time there. "
      + (f"On the CPU ({cpu_device.split('(')[-1].rstrip(')')}), where the denoiser dominates, CFG takes "
         f"{cpu['cfg5']['seconds'] / cpu['dice']['seconds']:.2f}× DICE's time, as the NFE count says; these CPU "
         "timings come from a shared machine and vary by about 20 %. " if cpu else "")
      + "The enhancer runs once per prompt and its time is included.\n")

    w("## Alignment against NFE (paper Figure 5)\n")
    w("![alignment vs NFE](toyworld-nfe.png)\n")
    curves = nfe_curves(rows)
    w("| NFE | unguided | DICE | CFG w = 5 |")
    w("|---:|---:|---:|---:|")
    for nfe in sorted(set().union(*curves.values())):
        w(f"| {nfe} | " + " | ".join(pct(curves[m][nfe]) if nfe in curves[m] else "–" for m in ("unguided", "dice", "cfg5")) + " |")
    w("")
    both = sorted(set(curves["dice"]) & set(curves["cfg5"]))
    ahead = [n for n in both if curves["dice"][n] > curves["cfg5"][n]]
    behind = [n for n in both if n not in ahead]
    w(f"Unguided and DICE use NFE = steps, CFG NFE = 2 × steps. At equal NFE DICE is ahead of CFG at "
      f"{', '.join(map(str, ahead)) or 'no budget'} NFE and behind at {', '.join(map(str, behind)) or 'none'}: "
      "DICE saturates after about 12 steps, while CFG keeps gaining with steps.\n")

    w("## Enhancer strength alpha (paper Figure 8)\n")
    w("![alpha sweep](toyworld-alpha.png)\n")
    w("| alpha | " + " | ".join(f"{a:g}" for a, _ in _alphas(rows)) + " |")
    w("|---|" + "---:|" * len(_alphas(rows)))
    w("| alignment | " + " | ".join(pct(s) for _, s in _alphas(rows)) + " |")
    w("")
    peak = max(_alphas(rows), key=lambda a: a[1])
    top = max(r["alpha"] for r in rows.values() if r["name"].startswith("dice-alpha"))
    strongest = rows[f"dice-alpha{top:g}"]
    worst = sorted(strongest["attributes"], key=lambda k: strongest["attributes"][k] - dice["attributes"][k])[:2]
    w(f"Alignment peaks at alpha = {peak[0]:g} ({pct(peak[1])}; alpha 1, as trained: {pct(dice['alignment'])}); "
      f"at alpha = {top:g} it falls to {pct(strongest['alignment'])}, losing most in {worst[0]} and {worst[1]}. "
      f"DICE + CFG w = 2 (40 NFE): {pct(rows['dice+cfg2']['alignment'])}.\n")

    w("## Per attribute\n")
    kinds = list(rows["unguided"]["attributes"])
    w("| method | " + " | ".join(kinds) + " |")
    w("|---|" + "---:|" * len(kinds))
    for name, title in TABLE:
        w(f"| {title} | " + " | ".join(pct(rows[name]["attributes"][k]) for k in kinds) + " |")
    share = {k: (dice["attributes"][k] - rows["unguided"]["attributes"][k])
             / (rows["cfg5"]["attributes"][k] - rows["unguided"]["attributes"][k]) for k in kinds}
    w("| *DICE's share of CFG's gain* | " + " | ".join(f"{100 * share[k]:.0f} %" for k in kinds) + " |")
    w("")
    gains = sorted(kinds, key=lambda k: rows["cfg5"]["attributes"][k] - rows["unguided"]["attributes"][k], reverse=True)
    w(f"CFG gains most in {', '.join(gains[:3])}. DICE recovers {100 * share[gains[0]]:.0f} % of the {gains[0]} "
      f"gain but only {100 * share[gains[1]]:.0f} % of the {gains[1]} and {100 * share[gains[2]]:.0f} % of the "
      f"{gains[2]} gain.\n")

    w("## Samples\n")
    w("![sample grid](toyworld-grid.png)\n")
    w("Rows: the first eight held-out prompts (below); columns: a ground-truth render, unguided, CFG w = 5, "
      "DICE, DICE alpha 1.5, DICE with the row's negative prompt.\n")
    for i, (p, n) in enumerate(zip(gpu["grid_prompts"], gpu["grid_negatives"])):
        w(f"{i + 1}. {p} (negative: {n})")
    w("")

    w("## Investigation: why not 90 %\n")
    w("![loss](toyworld-loss.png)\n")
    log = jsonl(TRAIN_LOGS["null prompt"])
    first, last = np.mean([r["loss"] for r in log[:5]]), np.mean([r["loss"] for r in log[-50:]])
    w(f"The loss falls only from {first:.3f} to {last:.3f} ({100 * (1 - last / first):.0f} %), most of it in the first "
      "few hundred steps, for both enhancers. To find where the limit lies, `scripts/toy/investigate.py` "
      "trains variants that each change one thing against `dice distill`'s objective (several runs side by side "
      "on one GPU, each stopped after a fixed time; 256 held-out prompts, seed 7). *Guidance error* is mean "
      "|eps(x_t, c') − eps_cfg| on fresh renders of the held-out prompts at random t, before (c' = c) and after. "
      "The *free embedding* rows replace the enhancer by a free 77 × 64 offset per evaluation prompt, optimised "
      "on renders of exactly those prompts: an oracle no enhancer can match, which bounds what any c' can do "
      "for this model.\n")
    w("| run | card | variant | lr | loss | t sampling | steps × 128 | guidance error before → after | unguided | CFG 5 | result | gap closed |")
    w("|---|---|---|---:|---|---|---:|---|---:|---:|---:|---:|")
    runs = [(path, r) for path in (INVESTIGATION, *CEILING) for r in jsonl(path)]
    for path, r in runs:
        u, c, d = r["unguided"]["alignment"], r["cfg5"]["alignment"], r["dice"]["alignment"]
        title = f"free embedding ({r['variant']})" if r["variant"].startswith("free") else f"enhancer ({r['variant']})"
        t = {"high": "U{400..999}"}.get(r["timesteps"], "U{0..999}")
        w(f"| {path.stem.rsplit('-', 4)[0]} | {_device_of(path)} | {title} | {r['lr']:g} | {r['loss']} | {t} | {r['steps']:,} | "
          f"{r['guidance_error_before']:.4f} → {r['guidance_error_after']:.4f} "
          f"({100 * (1 - r['guidance_error_after'] / r['guidance_error_before']):.0f} % less) | "
          f"{pct(u)} | {pct(c)} | {pct(d)} | {closure(d, u, c)} |")
    w("")
    early = [jsonl(p) for p in EARLY_RUNS]
    w("Earlier runs with `dice distill` on one H100 (256 prompts, seed 7): "
      + "; ".join(f"{name} → {pct(next(r['alignment'] for r in run if r['method'] == 'DICE' and r['steps'] == 20 and r['alpha'] == 1.0))}"
                  for name, run in zip(("2,000 steps, lr 2e-4", "2,500 steps, lr 1e-3"), early))
      + f" (unguided {pct(early[0][0]['alignment'])}, CFG w = 5 {pct(early[0][1]['alignment'])}).\n")

    def gap(r):
        return (r["dice"]["alignment"] - r["unguided"]["alignment"]) / (r["cfg5"]["alignment"] - r["unguided"]["alignment"])

    def less(r):
        return 1 - r["guidance_error_after"] / r["guidance_error_before"]

    late = early[1]
    early_gap = ((next(r["alignment"] for r in late if r["method"] == "DICE" and r["steps"] == 20 and r["alpha"] == 1.0)
                  - late[0]["alignment"]) / (late[1]["alignment"] - late[0]["alignment"]))
    free = [r for _, r in runs if r["variant"].startswith("free")]
    enh = [r for _, r in runs if not r["variant"].startswith("free")]
    best = max(free, key=gap)
    negative_share = ((rows["dice-negative"]["alignment"] - low) / (rows["cfg5-negative"]["alignment"] - low))
    w("What this shows:\n")
    w(f"- **Most of the limit is the model.** The best free embedding ({best['variant']}, lr {best['lr']:g}) "
      f"closes {100 * gap(best):.0f} % of the gap and lowers the guidance error by {100 * less(best):.0f} %. "
      "It was still improving when stopped, slowly ("
      + ", ".join(f"{100 * gap(r):.0f} % at {r['steps']:,} steps" for r in sorted(
          (r for r in free if r["variant"] == best["variant"]), key=lambda r: r["steps"]))
      + "), and no free run came near 90 %. For this UNet (64-wide "
      "cross-attention on a random frozen text encoder) no single embedding reproduces CFG's effect at every "
      "t and x_t, and DICE, by design, has one embedding per prompt.\n"
      f"- **The enhancer loses some more.** In the same time budget the enhancer variants close "
      f"{100 * min(map(gap, enh)):.0f}–{100 * max(map(gap, enh)):.0f} % and lower the guidance error by "
      f"{100 * min(map(less, enh)):.0f}–{100 * max(map(less, enh)):.0f} %; the report's enhancer, trained longer, "
      f"closes {100 * closed:.0f} %, {100 * closed / gap(best):.0f} % of the oracle's closure. A per-token map "
      "learnt on training prompts and applied to held-out colour–shape pairs cannot fit each prompt as the oracle "
      "does.\n"
      f"- **Learning rate, loss, timesteps**: lr 2e-4 / 1e-3 / 3e-3, L1 / L2 and t ~ U{{400..999}} (where "
      "layout, shape and colour are decided) all land within "
      f"{100 * (max(r['dice']['alignment'] for r in enh) - min(r['dice']['alignment'] for r in enh)):.1f} points "
      "of each other at the same time budget, about the noise of 256 prompts. **Steps** help a little while the "
      f"loss barely moves: {100 * gap(next(r for r in enh if r['variant'] == 'lr1e-3')):.0f} % at "
      f"{next(r for r in enh if r['variant'] == 'lr1e-3')['steps']:,} steps, "
      f"{100 * early_gap:.0f} % at 2,500 in the earlier run, {100 * closed:.0f} % at 3,000 (the report's "
      "enhancer, on its 1,024 prompts).\n"
      "- **Alpha** above 1.25 loses alignment (section above), so a stronger push does not make up the "
      f"difference. **Negative-prompt distillation** (null share 0.2) gets {100 * negative_share:.0f} % of "
      "the way from unguided to CFG with the same negative prompts.\n")
    w("Also not met here: the issue asks that a one-minute CPU distill reduce the guidance error by ≥ 30 %. "
      "On this model the enhancers above reduce it by at most "
      f"{100 * max(map(less, enh)):.0f} % after GPU training and the per-prompt oracle by at most "
      f"{100 * max(map(less, free)):.0f} %, so the CPU tests (`tests/test_toy_dice.py`) assert what does hold: "
      "the shipped enhancer reduces it on held-out prompts and raises unguided alignment through `dice sample` "
      "and `dice eval`, and a short CPU distill reduces it.\n")

    build, rebuild = json.loads(BUILD.read_text()), json.loads(REBUILD.read_text())
    w("## Rebuilding\n")
    w("`scripts/toy/build_toy.py OUT --steps-eval 6173 --steps-vae 2258 --steps-unet 3380` rebuilds the "
      "model and evaluator (world seed 0, torch seeds 0, ~9 minutes on one GPU); `scripts/toy/run_gpu_report.sh "
      "distill` then distils both enhancers (~8 minutes), `run_gpu_report.sh report DIR` runs every setting "
      "here (~2 minutes), and this script writes the page. GPU training "
      "is not bit-exact (cuDNN/cuBLAS choices differ by card and run), so a rebuild gives a sibling model:\n")
    w("| | card | evaluator on fresh renders | unguided | CFG w = 3 | CFG w = 5 | CFG gap |")
    w("|---|---|---:|---:|---:|---:|---:|")
    for title, b in (("shipped build", build), ("rebuild", rebuild)):
        w(f"| {title} | {b['device']} | {pct(b['evaluator']['alignment_on_ground_truth_renders'])} | "
          f"{pct(b['alignment_cfg1'])} | {pct(b['alignment_cfg3'])} | {pct(b['alignment_cfg5'])} | "
          f"{100 * (b['alignment_cfg5'] - b['alignment_cfg1']):.1f} points |")
    w("")
    gap_diff = abs((build["alignment_cfg5"] - build["alignment_cfg1"]) - (rebuild["alignment_cfg5"] - rebuild["alignment_cfg1"]))
    level_diff = max(abs(build[k] - rebuild[k]) for k in ("alignment_cfg1", "alignment_cfg3", "alignment_cfg5"))
    w(f"(256 held-out prompts, each build scored by its own evaluator.) The CFG gap reproduces within "
      f"{100 * gap_diff:.1f} points; absolute alignment differs by up to {100 * level_diff:.1f} points between the "
      "two builds (other card, nondeterministic kernels, each with its own evaluator). The shipped files are the "
      "first build; the report's numbers are for them.\n")
    return "\n".join(out)


def _alphas(rows):
    return sorted([(0.0, rows["unguided"]["alignment"]), (1.0, rows["dice"]["alignment"])]
                  + [(r["alpha"], r["alignment"]) for r in rows.values() if r["name"].startswith("dice-alpha")])


def _device_of(path: Path) -> str:
    return next((card.upper() for card in ("h100", "h200") if card in path.name), "GPU")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--import-gpu", type=Path, help="a run directory of run_gpu_report.sh")
    parser.add_argument("--import-cpu", type=Path, help="a run directory of toy_report.py --table-only on a CPU")
    args = parser.parse_args()
    if args.import_gpu:
        import_run(args.import_gpu, GPU_REPORT)
    if args.import_cpu:
        import_run(args.import_cpu, CPU_REPORT)
    (DOCS / "toyworld.md").write_text(write())
    print(DOCS / "toyworld.md")


if __name__ == "__main__":
    main()
