"""Write docs/toyworld.md and its figures from the recorded toy runs in scripts/toy/results/.

    python scripts/toy/write_report.py                       # regenerate the report from results/
    python scripts/toy/write_report.py --import-gpu DIR      # first store a run of run_gpu_report.sh
    python scripts/toy/write_report.py --import-cpu DIR      # ... or of toy_report.py --table-only on a CPU
    python scripts/toy/write_report.py --import-dpm DIR      # ... its DPM-Solver++ rerun over all prompts

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
DPM_REPORT = RESULTS / "report-dpm-cpu-2026-11-26.json"
VARIANTS = RESULTS / "variants-h200-2026-11-26.jsonl"
VARIANT_CEILING = RESULTS / "ceiling-w256-pre-h100-2026-11-26.jsonl"
SCHEDULERS = {"pndm": "PNDM (PLMS: the toy pipeline's own scheduler)", "dpmsolver++": "DPM-Solver++"}
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

    if not (run / "toy-report.json").is_file():
        raise SystemExit(f"{run} holds no toy-report.json; give the --out folder of a toy_report.py run.")
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


def run_closure(r: dict) -> float:
    """Share of the unguided-to-CFG gap that an investigation run's result closes."""
    return (r["dice"]["alignment"] - r["unguided"]["alignment"]) / (r["cfg5"]["alignment"] - r["unguided"]["alignment"])


def error_cut(r: dict) -> float:
    """How much an investigation run lowered the guidance error (a share of where it started)."""
    return 1 - r["guidance_error_after"] / r["guidance_error_before"]


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
    w(f"Every number on this page comes from a recorded run (`scripts/toy/results/`; each section names its "
      f"card). Table 1 (first version), the sweeps, the attributes and the samples come from runs on an {gpu['device']} (PyTorch {gpu['torch']}, "
      f"{gpu['dtype']} sampling): `scripts/toy/run_gpu_report.sh distill` made the enhancers and "
      f"`scripts/toy/run_gpu_report.sh report` ran every sampling setting, over **{gpu['prompts']:,} held-out prompts** "
      f"(`ToyWorld(seed={gpu['eval_seed']}, held_out=True)`: every prompt names at least one colour–shape pair "
      "that never appears in training), one image per prompt with seed = prompt index, "
      f"{SCHEDULERS[gpu['scheduler']]}. "
      f"On ground-truth renders of these prompts the classifier scores {pct(gpu['truth_alignment'])}: "
      "that is the ceiling of the alignment scale.\n")
    if gpu.get("scheduler_note"):
        w("**Scheduler.** These runs were meant to sample with DPM-Solver++, as `dice sample` does by default, "
          "and said so in an earlier version of this page; a bug in `toy_report.py` (it passed its pipeline to "
          "`generate()`, which then kept the pipeline's own scheduler; fixed and tested since) made them use "
          "PNDM. The numbers are what PNDM gave. Table 1 is repeated with DPM-Solver++ below.\n")
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
      "optimised freely for each evaluation prompt stays well short of 90 %."
      + (f" Variants of the model with a wider, pretrained text encoder raise both the oracle and DICE "
         f"({100 * max(variant_closures().values()):.0f} % at best), still short of 90 % (section *Toy model "
         "variants*)." if VARIANTS.exists() else "") + "\n")
    on_gpu = rows["cfg5"]["seconds"] / rows["dice"]["seconds"]
    w(f"Wall time: the toy UNet is so small that the {gpu['device']} is launch-bound at batch 256, so CFG's doubled "
      f"batch costs only {on_gpu:.2f}× DICE's time there. "
      + (f"On the CPU ({cpu_device.split('(')[-1].rstrip(')')}), where the denoiser dominates, CFG takes "
         f"{cpu['cfg5']['seconds'] / cpu['dice']['seconds']:.2f}× DICE's time, as the NFE count says; these CPU "
         "timings come from a shared machine and vary by about 20 %. " if cpu else "")
      + "The enhancer runs once per prompt and its time is included.\n")

    if DPM_REPORT.exists():
        dpm_report = json.loads(DPM_REPORT.read_text())
        dpm = {r["name"]: r for r in dpm_report["rows"]}
        d_low, d_high = dpm["unguided"]["alignment"], dpm["cfg5"]["alignment"]
        d_closed = (dpm["dice"]["alignment"] - d_low) / (d_high - d_low)
        d_fid_ok = dpm["dice"]["toy_fid"] <= 1.1 * dpm["cfg5"]["toy_fid"]
        w("### Table 1 with DPM-Solver++\n")
        w(f"The same enhancers and the same {dpm_report['prompts']:,} held-out prompts and seeds, sampled with "
          f"{SCHEDULERS[dpm_report['scheduler']]} (`toy_report.py --table-only`, run on a "
          f"{dpm_report['device']}, float32; it shared that machine with other work, so its times are not "
          "shown: NFE per image are the same as above):\n")
        w("| method | NFE | alignment | gap closed | toy FID |")
        w("|---|---:|---:|---:|---:|")
        for name, title in TABLE:
            r = dpm[name]
            gap = closure(r["alignment"], d_low, d_high) if not r["negative_prompt"] else "–"
            w(f"| {title} | {r['nfe']} | {pct(r['alignment'])} | {gap} | {r['toy_fid']:.2f} |")
        w("")
        d_verdict = "met" if d_closed >= 0.9 and d_fid_ok else "not met"
        w(f"**Target with DPM-Solver++: {d_verdict}.** DICE closes {100 * d_closed:.0f} % of the gap "
          f"({pct(d_low)} → {pct(dpm['dice']['alignment'])}, CFG {pct(d_high)}); toy FID "
          f"{dpm['dice']['toy_fid']:.2f} against CFG's {dpm['cfg5']['toy_fid']:.2f} "
          f"({'within' if d_fid_ok else 'outside'} +10 %). DPM-Solver++ converges in fewer steps than PNDM: CFG at "
          f"20 NFE (10 steps) already reaches {closure(dpm['cfg5-20nfe']['alignment'], d_low, d_high)} of its own "
          f"40-NFE gain ({pct(dpm['cfg5-20nfe']['alignment'])}; PNDM: {pct(rows['cfg5-20nfe']['alignment'])}), so at "
          f"equal NFE DICE {'beats' if dpm['dice']['alignment'] > dpm['cfg5-20nfe']['alignment'] else 'is behind'} "
          "CFG with this solver; DICE's lead at equal NFE in the sweep below is a PNDM result. The rest of this "
          "page (NFE and alpha sweeps, attributes, samples) is the PNDM run above.\n")

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
    w(f"Unguided and DICE use NFE = steps, CFG NFE = 2 × steps. With PNDM, at equal NFE DICE is ahead of CFG at "
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
      "on one GPU, each stopped after a fixed time; 256 held-out prompts, seed 7, DPM-Solver++, float32). *Guidance error* is mean "
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
          f"({100 * error_cut(r):.0f} % less) | "
          f"{pct(u)} | {pct(c)} | {pct(d)} | {closure(d, u, c)} |")
    w("")
    early = [jsonl(p) for p in EARLY_RUNS]
    w("Earlier runs with `dice distill` on one H100 (256 prompts, seed 7): "
      + "; ".join(f"{name} → {pct(next(r['alignment'] for r in run if r['method'] == 'DICE' and r['steps'] == 20 and r['alpha'] == 1.0))}"
                  for name, run in zip(("2,000 steps, lr 2e-4", "2,500 steps, lr 1e-3"), early))
      + f" (unguided {pct(early[0][0]['alignment'])}, CFG w = 5 {pct(early[0][1]['alignment'])}).\n")

    late = early[1]
    early_gap = ((next(r["alignment"] for r in late if r["method"] == "DICE" and r["steps"] == 20 and r["alpha"] == 1.0)
                  - late[0]["alignment"]) / (late[1]["alignment"] - late[0]["alignment"]))
    free = [r for _, r in runs if r["variant"].startswith("free")]
    enh = [r for _, r in runs if not r["variant"].startswith("free")]
    best = max(free, key=run_closure)
    negative_share = ((rows["dice-negative"]["alignment"] - low) / (rows["cfg5-negative"]["alignment"] - low))
    w("What this shows:\n")
    w(f"- **Most of the limit is the model.** The best free embedding ({best['variant']}, lr {best['lr']:g}) "
      f"closes {100 * run_closure(best):.0f} % of the gap and lowers the guidance error by {100 * error_cut(best):.0f} %. "
      "It was still improving when stopped, slowly ("
      + ", ".join(f"{100 * run_closure(r):.0f} % at {r['steps']:,} steps" for r in sorted(
          (r for r in free if r["variant"] == best["variant"]), key=lambda r: r["steps"]))
      + "), and no free run came near 90 %. For this UNet (64-wide "
      "cross-attention on a random frozen text encoder) no single embedding reproduces CFG's effect at every "
      "t and x_t, and DICE, by design, has one embedding per prompt.\n"
      f"- **The enhancer loses some more.** In the same time budget the enhancer variants close "
      f"{100 * min(map(run_closure, enh)):.0f}–{100 * max(map(run_closure, enh)):.0f} % and lower the guidance error by "
      f"{100 * min(map(error_cut, enh)):.0f}–{100 * max(map(error_cut, enh)):.0f} %; the report's enhancer, trained longer, "
      f"closes {100 * closed:.0f} %, {100 * closed / run_closure(best):.0f} % of the oracle's closure. A per-token map "
      "learnt on training prompts and applied to held-out colour–shape pairs cannot fit each prompt as the oracle "
      "does.\n"
      f"- **Learning rate, loss, timesteps**: lr 2e-4 / 1e-3 / 3e-3, L1 / L2 and t ~ U{{400..999}} (where "
      "layout, shape and colour are decided) all land within "
      f"{100 * (max(r['dice']['alignment'] for r in enh) - min(r['dice']['alignment'] for r in enh)):.1f} points "
      "of each other at the same time budget, about the noise of 256 prompts. **Steps** help a little while the "
      f"loss barely moves: {100 * run_closure(next(r for r in enh if r['variant'] == 'lr1e-3')):.0f} % at "
      f"{next(r for r in enh if r['variant'] == 'lr1e-3')['steps']:,} steps, "
      f"{100 * early_gap:.0f} % at 2,500 in the earlier run, {100 * closed:.0f} % at 3,000 (the report's "
      "enhancer, on its 1,024 prompts).\n"
      "- **Alpha** above 1.25 loses alignment (section above), so a stronger push does not make up the "
      f"difference. **Negative-prompt distillation** (null share 0.2) gets {100 * negative_share:.0f} % of "
      "the way from unguided to CFG with the same negative prompts.\n")
    w("Also not met here: the issue asks that a one-minute CPU distill reduce the guidance error by ≥ 30 %. "
      "On this model the enhancers above reduce it by at most "
      f"{100 * max(map(error_cut, enh)):.0f} % after GPU training and the per-prompt oracle by at most "
      f"{100 * max(map(error_cut, free)):.0f} %, so the CPU tests (`tests/test_toy_dice.py`) assert what does hold: "
      "the shipped enhancer reduces it on held-out prompts and raises unguided alignment through `dice sample` "
      "and `dice eval`, and a short CPU distill reduces it.\n")

    _variants(w, closed)

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
    w(f"(256 held-out prompts, DPM-Solver++, each build scored by its own evaluator.) The CFG gap reproduces within "
      f"{100 * gap_diff:.1f} points; absolute alignment differs by up to {100 * level_diff:.1f} points between the "
      "two builds (other card, nondeterministic kernels, each with its own evaluator). The shipped files are the "
      "first build; the report's numbers are for them.\n")
    return "\n".join(out)


def variant_closures() -> dict[str, float]:
    """Share of the unguided-to-CFG gap that DICE closes, per toy-model variant."""
    closed = {}
    for v in jsonl(VARIANTS):
        t = {r["name"]: r["alignment"] for r in v["table"]["rows"]}
        closed[v["variant"]] = (t["dice"] - t["unguided"]) / (t["cfg5"] - t["unguided"])
    return closed


def _variants(w, shipped_closed: float) -> None:
    """The toy-model variants with a stronger text side (scripts/toy/run_gpu_variants.sh)."""
    if not VARIANTS.exists():
        return
    variants = jsonl(VARIANTS)
    w("## Toy model variants: a stronger text side\n")
    w("The investigation points at the model, so four variants of it were built and distilled side by side "
      "(`scripts/toy/run_gpu_variants.sh`, one per GPU of a 4 × NVIDIA H200 host). Each keeps the shipped VAE and "
      "evaluator (`build_toy.py --reuse`: neither depends on the text side), the world, the seeds and the "
      "UNet's 3,380 steps, and changes only the text encoder: its width (= the UNet's cross-attention width; "
      "shipped: 64) and whether it is pretrained before being frozen (`--text-pretrain-steps 1000`: it learns to "
      "read each caption's stated attributes from its end-of-text state, as CLIP hands Stable Diffusion "
      "semantic, bound token states; shipped: random). *Build*: the build script's own check, diffusers "
      "pipeline with DPM-Solver++, 512 held-out prompts. *DICE*: `dice distill` (null prompt, lr 1e-3, batch 128) "
      "and `toy_report.py --table-only` on the same 512 prompts, which, by the bug above, sampled with PNDM.\n")
    w("| variant | text width | text pretrained | build: unguided | build: CFG 5 | build: gap | distill steps | "
      "unguided | CFG 5 | CFG 5, 10 steps | DICE | gap closed |")
    w("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for v in variants:
        b, t = v["build"], {r["name"]: r["alignment"] for r in v["table"]["rows"]}
        w(f"| {v['variant']} | {b['text_encoder']['width']} | {'yes' if b['text_encoder']['pretrain_steps'] else 'no'} | "
          f"{pct(b['alignment_cfg1'])} | {pct(b['alignment_cfg5'])} | "
          f"{100 * (b['alignment_cfg5'] - b['alignment_cfg1']):.1f} points | {v['distill']['steps']:,} | "
          f"{pct(t['unguided'])} | {pct(t['cfg5'])} | {pct(t['cfg5-20nfe'])} | {pct(t['dice'])} | "
          f"{closure(t['dice'], t['unguided'], t['cfg5'])} |")
    w("")

    closed = variant_closures()
    best = max(closed, key=closed.get)
    pndm_gap = {v["variant"]: (lambda t: t["cfg5"] - t["unguided"])({r["name"]: r["alignment"] for r in v["table"]["rows"]})
                for v in variants}
    ceiling = jsonl(VARIANT_CEILING) if VARIANT_CEILING.exists() else []
    free = next((r for r in ceiling if r["variant"].startswith("free")), None)
    enh = next((r for r in ceiling if not r["variant"].startswith("free")), None)
    w("What this shows:\n")
    table = {v["variant"]: {r["name"]: r["alignment"] for r in v["table"]["rows"]} for v in variants}
    widths = [(v["variant"], v["build"]["text_encoder"]["width"]) for v in variants if v["build"]["text_encoder"]["pretrain_steps"]]
    line = (f"- **A wider, pretrained text encoder lets the embedding steer more.** With pretraining, the share of "
            "the gap DICE closes rises with the width: "
            + ", ".join(f"{100 * closed[v]:.0f} % at {width}" for v, width in sorted(widths, key=lambda x: x[1]))
            + f" (2,000 distillation steps), against {100 * shipped_closed:.0f} % for the shipped model (width 64, "
            "random, 3,000 steps)")
    if "w128" in table and "w128-pre" in table:
        line += (f" and {100 * closed['w128']:.0f} % for width 128 without pretraining (3,000 steps). At width 128, "
                 f"pretraining raises unguided alignment by {100 * (table['w128-pre']['unguided'] - table['w128']['unguided']):.1f} "
                 f"points and CFG w = 5 by {100 * (table['w128-pre']['cfg5'] - table['w128']['cfg5']):.1f} points")
    w(line + ".")
    # the shipped model's run at the nearest step count (3,076 vs 2,793 and 4,687)
    v1 = min((r for path in CEILING for r in jsonl(path) if r["variant"] == "free-lr3e-2"), key=lambda r: r["steps"])
    if free and enh:
        w(f"- **The oracle moves too.** On {best} (one H100, the investigation's protocol: DPM-Solver++, "
          f"256 held-out prompts, float32) the free per-prompt embedding ({free['variant']}) closes "
          f"{100 * run_closure(free):.0f} % of the gap after {free['steps']:,} steps and lowers the guidance error by "
          f"{100 * error_cut(free):.0f} % (shipped model: "
          f"{100 * run_closure(v1):.0f} % after {v1['steps']:,} steps, "
          f"{100 * error_cut(v1):.0f} %); an enhancer trained the same "
          f"way ({enh['variant']}, {enh['steps']:,} steps) closes {100 * run_closure(enh):.0f} % and lowers the error by "
          f"{100 * error_cut(enh):.0f} %.")
    top = next(v for v in variants if v["variant"] == best)
    evaluator_bytes = (ROOT / "dicecli" / "models" / "toy-evaluator.safetensors").stat().st_size
    dpm_gaps = [top["build"]["alignment_cfg5"] - top["build"]["alignment_cfg1"]] + (
        [free["cfg5"]["alignment"] - free["unguided"]["alignment"]] if free else [])
    text = (f"- **Why none of them ships yet.** The best variant, {best}, closes {100 * closed[best]:.0f} %: closer, "
            "not 90 %.")
    if "sizes" in top:
        size = top["sizes"]
        total = size["pipeline_bytes"] + evaluator_bytes + size["enhancer_float16_bytes"]
        text += (f" Its pipeline is {size['pipeline_bytes'] / 1e6:.1f} MB; with the evaluator ({evaluator_bytes / 1e6:.1f} MB) "
                 f"and its reference enhancer in float16 ({size['enhancer_float16_bytes'] / 1e6:.1f} MB) the shipped "
                 f"files would come to {total / 1e6:.1f} MB, over the issue's 25 MB "
                 f"({(total - evaluator_bytes / 2) / 1e6:.1f} MB even with the evaluator in float16).")
    text += (f" Under PNDM its CFG gap is only {100 * pndm_gap[best]:.1f} points, below the issue's 15 (with "
             f"DPM-Solver++: {', '.join(f'{100 * g:.1f}' for g in dpm_gaps)} points). Replacing the shipped model also "
             "means rerunning every table on this page, which the GPU time of the session that ran these did not "
             "allow. Next: the 128-wide pretrained encoder (w128-pre fits 25 MB once the evaluator is stored in "
             "float16; 192 wide would not), distilled for 3,000 or more steps, with the oracle measured first.\n")
    w(text)


def _alphas(rows):
    return sorted([(0.0, rows["unguided"]["alignment"]), (1.0, rows["dice"]["alignment"])]
                  + [(r["alpha"], r["alignment"]) for r in rows.values() if r["name"].startswith("dice-alpha")])


def _device_of(path: Path) -> str:
    return next((card.upper() for card in ("h100", "h200") if card in path.name), "GPU")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--import-gpu", type=Path, help="a run directory of run_gpu_report.sh")
    parser.add_argument("--import-cpu", type=Path, help="a run directory of toy_report.py --table-only on a CPU")
    parser.add_argument("--import-dpm", type=Path, help="a DPM-Solver++ run directory of toy_report.py --table-only")
    args = parser.parse_args()
    if args.import_gpu:
        import_run(args.import_gpu, GPU_REPORT)
    if args.import_cpu:
        import_run(args.import_cpu, CPU_REPORT)
    if args.import_dpm:
        import_run(args.import_dpm, DPM_REPORT)
    (DOCS / "toyworld.md").write_text(write())
    print(DOCS / "toyworld.md")


if __name__ == "__main__":
    main()
