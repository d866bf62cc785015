"""Write docs/toyworld.md and its figures from the recorded toy runs in scripts/toy/results/.

    python scripts/toy/write_report.py                  # regenerate the report from results/
    python scripts/toy/write_report.py --import DIR     # first store a GPU run (the folder run_gpu.sh report
                                                        # returns, with the distill folder's logs in it)
    python scripts/toy/write_report.py --import-rebuild DIR   # first store a rebuild check (run_gpu.sh rebuild)
    python scripts/toy/write_report.py --import-null-share DIR   # first store the null-share runs (run_gpu.sh ablate)
    python scripts/toy/write_report.py --import-analyses DIR   # first store the analyses (scripts/toy/analyses.py)
    python scripts/toy/write_report.py --import-pnp DIR   # first store the PnP row (run_gpu.sh pnp-report)

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
REBUILD = RESULTS / f"rebuild-{TAG}.json"  # run_gpu.sh rebuild: the model built again, Table 1 on it
NULL_SHARE = RESULTS / f"null-share-{TAG}.json"  # run_gpu.sh ablate DISTILL null0.2 null0.5 null1
ABLATION_SHORT = RESULTS / f"ablation-1000-steps-{TAG}.json"  # the first ablation: every run stopped at 1,000 steps
ANALYSES = RESULTS / "analyses-h200-2026-12-01.json"  # scripts/toy/analyses.py: parts, strength, trigger words
PCA = RESULTS / "pca-cpu-2026-12-02.json"  # scripts/toy/pca.py: dice inspect --pca on the held-out pairs
PNP = RESULTS / "pnp-h200-2026-12-02.json"  # run_gpu.sh pnp, then pnp-report: the Plug-and-Play row
ENHANCER_PARAMETERS = 1_312_000  # Enhancer.for_text at D = 256 (tests/test_toy_model.py checks it)
# enhancer file, `dice distill` options beyond the toy recipe's (scripts/toy/run_gpu.sh RUNS), run it came from
ABLATION = {"lr1e-3": ("--lr 1e-3 (the toy recipe's; constant)", "lr1e-3"),
            "lr1e-3-ema": ("--lr 1e-3 --ema 0.999 (the same run's average)", "lr1e-3"),
            "cosine": ("--lr 1e-3 --lr-schedule cosine --warmup-steps 100", "cosine"),
            "reference": ("--lr 2e-4 (the paper's)", "reference")}
CURVE = "lr1e-3"  # its checkpoints are scored too (ablation rows lr1e-3-STEP)
TABLE = [("unguided", "Unguided"), ("cfg5", "CFG w = 5"), ("cfg5-20nfe", "CFG w = 5, 10 steps"), ("dice", "DICE"),
         ("gd", "Guidance distillation (GD)"), ("pnp", "Plug-and-Play (PnP)"), ("cfg5-negative", "CFG w = 5 + negative prompt"),
         ("dice-negative", "DICE + negative prompt")]
SCHEDULERS = {"dpmsolver++": "DPM-Solver++", "pndm": "PNDM"}
SETS = {"held_out_pairs": "held-out colour–shape pairs", "held_out_phrasings": "held-out phrasings"}


# -- importing a GPU run --------------------------------------------------------------------------

def toy_fid(samples: np.ndarray, truth: np.ndarray) -> float:
    """Fréchet distance between two feature sets (clean-fid's formula)."""
    from cleanfid.fid import frechet_distance

    a, b = samples.astype(np.float64), truth.astype(np.float64)
    return max(0.0, float(frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))))


def read_features(run: Path) -> dict[str, np.ndarray]:
    """A toy_report.py run's evaluator features, by setting (`name:prompt set:scheduler`, `truth:prompt set`)."""
    features = {}
    for path in sorted(run.glob("toy-features-*.npz")):
        with np.load(path) as f:
            features.update({k.replace("|", ":"): f[k] for k in f.files})
    return features


def import_run(run: Path) -> None:
    if not (run / "toy-report.json").is_file():
        raise SystemExit(f"{run} holds no toy-report.json; give the folder of a toy_report.py run.")
    report = json.loads((run / "toy-report.json").read_text())
    features = read_features(run)
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


def scored_rows(run: Path) -> tuple[dict, dict[str, dict]]:
    """A toy_report.py run's held-out-pairs, DPM-Solver++ rows: alignment and toy FID by name."""
    report = json.loads((run / "toy-report.json").read_text())
    with np.load(run / "toy-features-0.npz") as f:
        features = {k.replace("|", ":"): f[k] for k in f.files}
    return report, {r["name"]: {"alignment": r["alignment"],
                                "toy_fid": toy_fid(features[r["features"]], features[f"truth:{r['prompt_set']}"])}
                    for r in report["rows"] if r["prompt_set"] == "held_out_pairs" and r["scheduler"] == "dpmsolver++"}


def import_null_share(run: Path) -> None:
    if not (run / "toy-report.json").is_file():
        raise SystemExit(f"{run} holds no toy-report.json; give the folder run_gpu.sh ablate returns.")
    report, rows = scored_rows(run)
    NULL_SHARE.write_text(json.dumps({"device": report["device"], "steps": 1000, "batch_size": 128, "rows": rows},
                                     indent=1) + "\n")
    print(NULL_SHARE)


def import_rebuild(run: Path) -> None:
    if not (run / "toy-report.json").is_file() or not (run / "build-model.json").is_file():
        raise SystemExit(f"{run} holds no toy-report.json and build-model.json; give the folder run_gpu.sh rebuild returns.")
    report, rows = scored_rows(run)
    build = json.loads((run / "build-model.json").read_text())
    REBUILD.write_text(json.dumps({"device": report["device"], "build": build, "rows": rows}, indent=1) + "\n")
    print(REBUILD)


def import_analyses(run: Path) -> None:
    if not (run / "analyses.json").is_file():
        raise SystemExit(f"{run} holds no analyses.json; give the folder scripts/toy/analyses.py wrote.")
    report = json.loads((run / "analyses.json").read_text())
    with np.load(run / "features.npz") as f:
        features = {k: f[k] for k in f.files}
    for row in report["rows"]:
        row["toy_fid"] = toy_fid(features[row["name"]], features["truth"])
    ANALYSES.write_text(json.dumps(report, indent=1) + "\n")
    shutil.copyfile(run / "parts.png", DOCS / "toyworld-parts.png")
    shutil.copyfile(run / "attention.png", DOCS / "toyworld-attention.png")
    print(ANALYSES)


def import_pnp(run: Path) -> None:
    """The PnP row of a `run_gpu.sh pnp-report` folder (toy FID from its features), its training record, and its
    unguided row, which must equal the recorded Table 1's (the same setting, seeds and GPU)."""
    for name in ("toy-report.json", "pnp.json"):
        if not (run / name).is_file():
            raise SystemExit(f"{run} holds no {name}; give the folder run_gpu.sh pnp-report returned.")
    report = json.loads((run / "toy-report.json").read_text())
    features = read_features(run)
    rows = {r["name"]: r for r in report["rows"]}
    pnp = {**rows["pnp"], "toy_fid": toy_fid(features[rows["pnp"]["features"]], features["truth:held_out_pairs"])}
    recorded = rows_of(json.loads(REPORT.read_text()))["unguided"]["alignment"]
    PNP.write_text(json.dumps({"device": report["device"], "row": pnp, "training": json.loads((run / "pnp.json").read_text()),
                               "unguided_alignment": rows["unguided"]["alignment"],
                               "recorded_unguided_alignment": recorded}, indent=1) + "\n")
    print(PNP)


def pnp_section(w, rows: dict[str, dict], pnp: dict, gd: dict) -> None:
    """The Plug-and-Play row: how it was trained, and the paper's framing (GD and PnP change or inject into the
    model; DICE changes only the condition), checked against the numbers."""
    t, low, high = pnp["training"], rows["unguided"]["alignment"], rows["cfg5"]["alignment"]
    closed = {name: closure(rows[name]["alignment"], low, high) for name in ("dice", "gd", "pnp")}
    w(f"PnP (`scripts/toy/plug_and_play.py`, Hsiao et al., CVPR 2024) keeps the UNet frozen and trains a guide "
      "built as ControlNet is (diffusers' `ControlNetModel.from_unet`: a trainable copy of the UNet's encoder whose "
      "outputs enter the frozen UNet's skip connections and middle block through zero-initialised convolutions; "
      "the PnP paper's pruned guide is a smaller variant of it, which a model this size does not need), with the "
      "guidance scale as an input as GD has it, on GD's targets, cache, batch and learning rate; it trained alone "
      f"on the GPU for {t['train_s']:.0f} s ({pnp['device']}), GD for {gd['train_s']:.0f} s beside other runs. Its "
      f"row was sampled in a later run whose unguided row "
      + claim(pnp["unguided_alignment"] == pnp["recorded_unguided_alignment"],
              "equals the recorded one exactly, so the rows compare as they stand.",
              f"reads {pct(pnp['unguided_alignment'])} against the recorded {pct(pnp['recorded_unguided_alignment'])}.")
      + "\n")
    order = sorted(closed, key=closed.get, reverse=True)
    names = {"dice": "DICE", "gd": "GD", "pnp": "PnP"}
    w("**What each method changes** (the paper's framing): GD changes the model (all "
      f"{gd['trainable_parameters']:,} UNet parameters are trained), PnP injects into it ({t['trainable_parameters']:,} "
      f"parameters beside the frozen UNet, run at every step), and DICE changes only the condition "
      f"({ENHANCER_PARAMETERS:,} parameters, run once per prompt; the UNet is untouched, so the enhancer transfers "
      "to other models of the family and leaves the model's own unguided and CFG sampling as they were). Here "
      f"{', '.join(f'{names[n]} closes {100 * closed[n]:.0f} %' for n in order)} of the gap: "
      + claim(closed["dice"] < min(closed["gd"], closed["pnp"]),
              "the two methods that reach into the model close more of it than the one that only rewrites the "
              f"condition, with {t['trainable_parameters'] / ENHANCER_PARAMETERS:.1f}× (PnP) and "
              f"{gd['trainable_parameters'] / ENHANCER_PARAMETERS:.1f}× (GD) DICE's trainable parameters.",
              "DICE is not behind both methods that reach into the model.") + "\n")


def analyses_section(w) -> None:
    """What the enhancer changes (the paper's section 4.3), the strength curve, and trigger words."""
    a = json.loads(ANALYSES.read_text())
    rows = {r["name"]: r for r in a["rows"]}
    low, dice = rows["unguided"]["alignment"], rows["dice-all"]["alignment"]

    def gain(name: str) -> float:
        return (rows[name]["alignment"] - low) / (dice - low)

    inspect = {s["part"]: s for s in a["inspect"]}
    w("## What the enhancer changes\n")
    w(f"The shipped reference enhancer (`--enhancer toy`) on the {a['prompts']:,} held-out-pair prompts, measured "
      "with `dice inspect`, `dice sample --enhance-part` and `--alpha` sweeps, `dice attention` and `dice trigger` "
      f"(`scripts/toy/analyses.py`, {a['device']}; Table 1's setting). The paper's SD1.5 figures are beside ours.\n")
    w("| part | cosine (original, enhanced) | paper, SD1.5 | relative change \\|c' − c\\| / \\|c\\| |")
    w("|---|---:|---:|---:|")
    paper = {"semantic": "0.75 ± 0.05", "padding": "0.23 ± 0.02"}
    for part in ("semantic", "padding"):
        s = inspect[part]
        w(f"| {part} | {s['cosine_mean']:.2f} ± {s['cosine_std']:.2f} | {paper[part]} | "
          f"{s['change_mean']:.2f} ± {s['change_std']:.2f} |")
    w("")
    rewrites_semantic = inspect["semantic"]["cosine_mean"] < inspect["padding"]["cosine_mean"]
    w(claim(rewrites_semantic,
            "Here the enhancer rewrites the semantic part more than the padding, the reverse of the paper's SD1.5, "
            "and both far more than there (the change is larger than the embedding itself). ",
            "As in the paper, the enhancer rewrites the padding more than the semantic part. ")
      + "The toy text encoder was trained only to state a caption's attributes, and its token states are not "
      "CLIP's; why its enhancer spreads the change this way was not measured further.\n")
    w("**Partial enhancement** (the paper's Figure 7): only one part of c replaced by c''s.\n")
    w("| setting | alignment | share of DICE's gain | toy FID |")
    w("|---|---:|---:|---:|")
    for name, title in (("unguided", "Unguided"), ("dice-semantic", "DICE, semantic part only"),
                        ("dice-padding", "DICE, padding part only"), ("dice-all", "DICE (all)"),
                        ("cfg5", "CFG w = 5 (40 NFE)")):
        w(f"| {title} | {pct(rows[name]['alignment'])} | {100 * gain(name):.0f} % | {rows[name]['toy_fid']:.2f} |")
    w("")
    padding_more = gain("dice-padding") > gain("dice-semantic")
    w(claim(padding_more,
            f"The padding part alone carries {100 * gain('dice-padding'):.0f} % of DICE's gain and the semantic part "
            f"alone {100 * gain('dice-semantic'):.0f} %: the padding does more of the work, as the paper finds, ",
            f"The semantic part alone carries {100 * gain('dice-semantic'):.0f} % of DICE's gain and the padding part "
            f"alone {100 * gain('dice-padding'):.0f} %: unlike the paper, the semantic part does more of the work, ")
      + "but neither alone gives the whole effect (their shares add up to "
      f"{100 * (gain('dice-padding') + gain('dice-semantic')):.0f} %)."
      + (" Although the enhancer changes the semantic part more (above), the denoiser responds more to what it "
         "writes into the padding." if rewrites_semantic and padding_more else "") + "\n")
    w("![partial enhancement](toyworld-parts.png)\n")
    w("Columns: " + ", ".join(a["grid_columns"]) + "; rows: the first six held-out-pair prompts.\n")

    w("**Strength** from 0 (the unguided model: c' = c) to 2, with toy FID:\n")
    curve = [(0.0, rows["unguided"]), (1.0, rows["dice-all"])] + [
        (r["alpha"], r) for n, r in rows.items() if n.startswith("dice-alpha")]
    curve.sort(key=lambda item: item[0])
    w("| alpha | " + " | ".join(f"{x:g}" for x, _ in curve) + " |")
    w("|---|" + "---:|" * len(curve))
    w("| alignment | " + " | ".join(pct(r["alignment"]) for _, r in curve) + " |")
    w("| toy FID | " + " | ".join(f"{r['toy_fid']:.1f}" for _, r in curve) + " |")
    w("")
    best = max(curve, key=lambda item: item[1]["alignment"])
    best_fid = min(curve, key=lambda item: item[1]["toy_fid"])
    w(f"Alignment peaks at alpha {best[0]:g} and toy FID is lowest at alpha {best_fid[0]:g}.\n")

    w("**Cross-attention maps** (the paper's Figure 9; `dice attention`): the UNet decoder's maps per word of "
      f"\"{a['attention']['prompt']}\", original and enhanced, at steps {', '.join(map(str, a['attention']['steps']))} "
      f"of 20 ({a['attention']['grid'][0]} × {a['attention']['grid'][1]}, the layers closest to 1/16 of the image "
      "side).\n")
    w("![attention maps](toyworld-attention.png)\n")

    triggers = a["triggers"]
    w("## Trigger words\n")
    w(f"`dice trigger` searched one universal suffix on {a['search_prompts']} training captions (never the "
      f"evaluation prompts) among the toy vocabulary's {a['candidate_words']} whole words, for up to "
      f"{a['iterations']} iterations of {a['top_k']} gradient-ranked swaps per position; the suffix was appended "
      "to the held-out prompts and sampled unguided (scored against what the original prompt states). Distance: "
      "the relative squared distance to the enhanced embedding (1 = the plain prompt). Target: the suffix "
      "recovers at least 50 % of DICE's gain over unguided.\n")
    w("| words | suffix | distance, search prompts | distance, held-out | alignment | share of DICE's gain | "
      "random words instead |")
    w("|---:|---|---:|---:|---:|---:|---:|")
    for t in triggers:
        share = (t["alignment"] - low) / (dice - low)
        w(f"| {t['length']} | {t['suffix']} | {t['search_distance']:.3f} | {t['held_out_distance']:.3f} | "
          f"{pct(t['alignment'])} | {100 * share:.0f} % | {pct(t['random_alignment'])} ({t['random_suffix']}) |")
    w("")
    best_share = max((t["alignment"] - low) / (dice - low) for t in triggers)
    closest = min(t["search_distance"] for t in triggers)
    w(claim(best_share >= 0.5, f"**Target met**: a suffix recovers {100 * best_share:.0f} % of DICE's gain.",
            f"**Target missed**: the best suffix recovers {100 * best_share:.0f} % of DICE's gain (unguided "
            f"{pct(low)}, DICE {pct(dice)}).")
      + " Why, from these numbers: the search lowers the distance to the enhanced embedding to "
      f"{closest:.3f} at best, that is by {100 * (1 - closest):.1f} %, because c' lies further from c than c's own "
      f"size (relative change {inspect['semantic']['change_mean']:.2f} semantic, "
      f"{inspect['padding']['change_mean']:.2f} padding) while a plain sentence encodes to states the text encoder "
      "was trained to produce; and every candidate word is one the world's captions use, so a suffix states "
      "colours, shapes or places that compete with the prompt's (random words cost up to "
      f"{100 * max(low - t['random_alignment'] for t in triggers):.1f} points). On real models, with 49,408 "
      "CLIP words and an enhancer that moves mostly the padding (the paper's cosines), the same search has more to "
      "work with; it was not run on one here (no weights can be downloaded).\n")


def pca_section(w) -> None:
    """Where enhanced embeddings live (the paper's Appendix A.2): `dice inspect --pca` on the held-out pairs."""
    r = json.loads(PCA.read_text())
    pca = r["pca"]
    original, enhanced = pca["original"], pca["enhanced"]
    w("## Where enhanced embeddings live\n")
    w(f"`dice inspect --pca` with the shipped reference enhancer on the {r['prompts']:,} held-out-pair prompts "
      f"(`scripts/toy/pca.py`, {r['device']}): each prompt's embedding ({pca['dimensions']:,} numbers) is a point, "
      "and the principal components of each set say how concentrated it is. The paper's SD1.5 figures, over 1,000 "
      "prompts, are beside ours.\n")
    w(f"| embeddings | top {pca['top']} components explain | paper, SD1.5 | components to "
      f"{100 * pca['share']:.0f} % | paper, SD1.5 |")
    w("|---|---:|---:|---:|---:|")
    w(f"| original | {100 * original['explained_top']:.1f} % | 8 % | {original['components_to_share']} | about 300 |")
    w(f"| enhanced | {100 * enhanced['explained_top']:.1f} % | 34 % | {enhanced['components_to_share']} | 60 |")
    w("")
    top_more = enhanced["explained_top"] > original["explained_top"]
    fewer = enhanced["components_to_share"] < original["components_to_share"]
    tops = f"{100 * enhanced['explained_top']:.1f} % against {100 * original['explained_top']:.1f} %"
    counts = f"{enhanced['components_to_share']} against {original['components_to_share']}"
    if top_more and fewer:
        verdict = (f"As in the paper, the enhanced embeddings are more concentrated: their top {pca['top']} components "
                   f"explain {tops}, and they reach {100 * pca['share']:.0f} % with {counts} components. ")
    elif top_more:
        verdict = (f"As in the paper, the top {pca['top']} components explain more of the enhanced embeddings' "
                   f"variance ({tops}); unlike it, the enhanced set needs more components to reach "
                   f"{100 * pca['share']:.0f} % ({counts}): the enhancement gathers variance into its leading "
                   "directions and spreads the rest. ")
    else:
        verdict = (f"Unlike the paper, the enhanced embeddings are not more concentrated: their top {pca['top']} "
                   f"components explain {tops}, with {counts} components to reach {100 * pca['share']:.0f} %. ")
    w(verdict + "The toy captions are a few words in fixed patterns: their plain embeddings reach "
      f"{100 * pca['share']:.0f} % with {original['components_to_share']} components, where the paper's SD1.5 "
      "prompts need about 300. "
      + claim(pca["pc1_separation"] > 1,
              "On the first component of their union the two sets lie apart (the gap between their means is "
              f"{pca['pc1_separation']:.1f} times the sum of their spreads along it): the enhancement moves the "
              "prompts' embeddings together, to a region of their own.",
              f"On the first component of their union the two sets overlap (the gap between their means is "
              f"{pca['pc1_separation']:.1f} times the sum of their spreads along it).") + "\n")
    w("![principal components](toyworld-pca.png)\n")


# -- the formulas ---------------------------------------------------------------------------------

class Contradiction(Exception):
    """The recorded numbers no longer bear out a conclusion of the report; it needs rewriting, not regenerating."""


def claim(holds: bool, sentence: str, otherwise: str | None = None) -> str:
    """A sentence that states something about the numbers, written only when they bear it out: `otherwise` is
    what they say instead; None means the report's conclusion depends on it, so no report is written."""
    if holds:
        return sentence
    if otherwise is None:
        raise Contradiction(f"the recorded results no longer support: {sentence!r}")
    return otherwise


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def closure(value: float, low: float, high: float) -> float:
    """Share of the gap from `low` (unguided) to `high` (CFG w = 5, 40 NFE) that `value` closes."""
    return (value - low) / (high - low)


# -- the report -----------------------------------------------------------------------------------

def rows_of(report: dict, prompt_set: str = "held_out_pairs", scheduler: str = "dpmsolver++") -> dict[str, dict]:
    return {r["name"]: r for r in report["rows"] if r["prompt_set"] == prompt_set and r["scheduler"] == scheduler}


def plots(rows: dict[str, dict], runs: dict, oracle: dict) -> None:
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
    for name in ("reference", "lr1e-3", "cosine"):
        steps = np.array([r["step"] for r in runs[name]["log"]])
        loss = np.convolve([r["loss"] for r in runs[name]["log"]], np.ones(10) / 10, mode="valid")
        ax.plot(steps[: len(loss)], loss, label=f"DICE {name}")
    ax.plot([r["step"] for r in oracle["log"]], [r["loss"] for r in oracle["log"]], "k--", label="per-prompt oracle")
    save(fig, ax, "step (batch 128)", "L1 DICE loss (smoothed)", "Toy world: distillation loss", "toyworld-loss.png")


def curve_plot(curve: dict[int, float], unguided: float, cfg: float) -> None:
    """Alignment against distillation steps (the paper's Figure 16), between unguided and CFG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    steps = sorted(curve)
    ax.plot(steps, [100 * curve[k] for k in steps], "o-", label="DICE, 20 NFE")
    ax.axhline(100 * cfg, color="C0", ls=":", label="CFG w = 5, 40 NFE")
    ax.axhline(100 * unguided, color="0.5", ls="--", label="unguided, 20 NFE")
    ax.set_xlabel("distillation steps (batch 128)")
    ax.set_ylabel("alignment (%)")
    ax.set_title("Toy world: quality over training", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(DOCS / "toyworld-curve.png", dpi=110)
    plt.close(fig)


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
    pnp = json.loads(PNP.read_text()) if PNP.exists() else None
    if pnp:
        rows["pnp"] = pnp["row"]
    plots(rows, runs, oracle)
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
    if pnp:
        t = pnp["training"]
        extra["pnp"] = {"parameters": f"{t['trainable_parameters']:,}",
                        "training": f"{t['steps']:,} steps × {t['batch_size']}, {t['train_s']:.0f} s"}
    table(w, rows, extra)
    w(f"Sampling with `dice sample`'s default, DPM-Solver++, 20 steps; {report['device']}, float16, batches of "
      f"{report['batch']}. "
      + claim(cfg["seconds"] < 1.5 * dice["seconds"],
              "At this size a sampling step is bound by kernel launches, not arithmetic: CFG's two branches run as "
              "one batch in about the time of one, so the time column does not show the halved NFE (the real-model "
              "benchmarks do). ",
              f"The time column shows CFG's second evaluation ({cfg['seconds']:.2f} s against DICE's "
              f"{dice['seconds']:.2f} s). ")
      + "*Gap closed* = (method − unguided) / (CFG w = 5 at 40 NFE − unguided). The negative-prompt "
      f"rows use, for prompt i, the caption of scene i of `ToyWorld(seed={report['negative_seed']})` (the toy "
      "vocabulary has no \"blurry, bad quality\": its negatives are other scenes), and that enhancer is distilled "
      "with the toy negative corpus (`scripts/toy/toy_negatives.py`, null share 0.2).\n")
    w(f"The enhancers are distilled by `dice distill` on a latent cache of 20,000 training scenes (`toy` recipe: "
      f"w = 5, L1, t ~ U{{0..999}}, lr 1e-3, seed 0), for {reference['steps']:,} steps × 128. Runs trained three "
      "side by side on one GPU (`run_gpu.sh distill`), so their training times are under that sharing. GD "
      f"(`scripts/toy/guidance_distill.py`) fine-tunes the whole UNet, guidance scale as an input (w ~ U[1, 8], "
      f"sampled at w = {report['gd_scale']:g}), lr 1e-4, on the same cache, for as many steps as fit in "
      f"{gd['train_s']:.0f} s. Every enhancer is scored as stored in float16; the shipped reference enhancer "
      "`dicecli/plugins/toy/toy-dice.safetensors` (`--enhancer toy`) is the DICE row's.\n")
    if pnp:
        pnp_section(w, rows, pnp, gd)

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
    during = ", ".join(f"{int(k):,} steps {pct(v)}" for k, v in sorted(oracle["oracle_at_step"].items(), key=lambda kv: int(kv[0])))
    w("**The per-prompt oracle** (`scripts/toy/oracle.py`) replaces the enhancer by a free offset of every "
      "prompt's embedding, optimised with the DICE objective on 32 fresh renders of each evaluation prompt "
      f"itself ({oracle['steps']:,} steps × {oracle['batch_size']}, lr {oracle['lr']:g}, {oracle['train_s']:.0f} s), "
      "and is scored on the same protocol: unguided "
      f"{pct(oracle['unguided'])}, CFG {pct(oracle['cfg5'])}, oracle {pct(oracle['oracle'])} "
      f"({100 * oracle_closed:.0f} % of the gap). Scored as it trained: {during}, and {pct(oracle['oracle'])} at the "
      "end; its loss flattens (the distillation-loss figure below). "
      + claim(oracle["oracle"] > max(oracle["oracle_at_step"].values()), "It still rises slowly, so it is a lower bound "
              "of the ceiling; ", "It has stopped rising, so it is near the ceiling; ")
      + "an enhancer maps every prompt through one network and has seen none of these prompts, so "
      f"it should come near the oracle, not far past it. DICE reaches {100 * dice_closed / oracle_closed:.0f} % "
      "of the oracle's closure.\n")

    pndm = rows_of(report, scheduler="pndm")
    w("## PNDM (the toy pipeline's own scheduler)\n")
    table(w, pndm)
    def versus(a: float, b: float) -> str:
        return "ahead of" if a > b else "behind"

    w(f"At equal NFE (20), CFG with 10 PNDM steps ({pct(pndm['cfg5-20nfe']['alignment'])}) is "
      f"{versus(pndm['cfg5-20nfe']['alignment'], pndm['dice']['alignment'])} DICE ({pct(pndm['dice']['alignment'])}); "
      f"with 10 DPM-Solver++ steps ({pct(rows['cfg5-20nfe']['alignment'])}) **CFG is "
      f"{versus(rows['cfg5-20nfe']['alignment'], dice['alignment'])} DICE** ({pct(dice['alignment'])}). "
      + claim(rows["cfg5-20nfe"]["alignment"] >= dice["alignment"],
              "DPM-Solver++ needs few steps on this small model, which takes away what DICE gains by halving the "
              "evaluations.", "At equal NFE, DICE keeps what it gains by halving the evaluations.") + "\n")

    phr = rows_of(report, "held_out_phrasings")
    w(f"## Held-out phrasings ({sets['held_out_phrasings']['prompts']} prompts, DPM-Solver++)\n")
    table(w, phr)
    phr_closed = closure(phr["dice"]["alignment"], phr["unguided"]["alignment"], phr["cfg5"]["alignment"])
    lowered = all(phr[m]["alignment"] < rows[m]["alignment"] for m in ("unguided", "cfg5", "dice"))
    w(claim(lowered, "Phrasings never seen in training lower every method", "Phrasings never seen in training")
      + f" (unguided {pct(phr['unguided']['alignment'])} vs {pct(low)}; CFG {pct(phr['cfg5']['alignment'])} vs "
      f"{pct(high)}); DICE closes {100 * phr_closed:.0f} % of their gap ({100 * dice_closed:.0f} % on held-out pairs)"
      + claim(phr_closed >= dice_closed - 0.15, ": the enhancer works on the text encoder's states, whatever the "
              "wording.", ": the enhancer carries less of CFG's gain to wordings it never saw.") + "\n")

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
    both_lose = (rows["cfg5-negative"]["alignment"] < cfg["alignment"]
                 and rows["dice-negative"]["alignment"] < dice["alignment"])
    w(f"DICE's shortfall against CFG is largest on {widest[0]} ({100 * gaps[widest[0]]:.1f} points) and {widest[1]} "
      f"({100 * gaps[widest[1]]:.1f} points). "
      + claim(both_lose, "With a negative prompt, both methods lose alignment", "With a negative prompt")
      + f" (CFG {pct(rows['cfg5-negative']['alignment'])}, DICE {pct(rows['dice-negative']['alignment'])})"
      + claim(both_lose, ": the toy negatives are captions of other scenes, which often share a colour, shape or "
              "background with the prompt, so steering away from them also steers away from what the prompt states.",
              ".") + "\n")

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
    w(f"Each row is a `dice distill` run of {reference['steps']:,} steps × 128 with the toy recipe and the options "
      "shown, scored at the Table 1 setting.\n")
    w("| run | options | alignment | gap closed | toy FID |")
    w("|---|---|---:|---:|---:|")
    for name, (options, _) in ABLATION.items():
        r = rows[f"ablation:{name}"]
        w(f"| {name} | `{options}` | {pct(r['alignment'])} | {100 * closure(r['alignment'], low, high):.0f} % | "
          f"{r['toy_fid']:.2f} |")
    w("")
    short = json.loads(ABLATION_SHORT.read_text())
    curve = {short["runs"][CURVE]["steps"]: short["runs"][CURVE]["alignment"]}  # the same settings and seed
    curve |= {int(n.rsplit("-", 1)[1]): r["alignment"] for n, r in rows.items() if n.startswith(f"ablation:{CURVE}-")
              and n.rsplit("-", 1)[1].isdigit()}
    curve[reference["steps"]] = dice["alignment"]
    w(f"The toy recipe's run as it trained (its checkpoints; {min(curve):,} steps from the first ablation below, "
      "the same settings and seed):\n")
    w("| steps | " + " | ".join(f"{k:,}" for k in sorted(curve)) + " |")
    w("|---|" + "---:|" * len(curve))
    w("| alignment | " + " | ".join(pct(curve[k]) for k in sorted(curve)) + " |")
    w("")
    curve_plot(curve, rows["unguided"]["alignment"], rows["cfg5"]["alignment"])
    w("![alignment over training](toyworld-curve.png)\n")
    w("Quality over training, the paper's Figure 16, at these three points: the run kept its newest two "
      "checkpoints, as `dice distill` does by default. With `--keep-checkpoints 0` it keeps every one, and "
      "`dice sample --enhancer WORK_DIR` then `dice eval` draw this curve for any run "
      "([analyses.md](analyses.md), \"Quality over training\").\n")
    w(f"The first ablation: every run stopped at equal samples ({short['runs'][CURVE]['steps']:,} steps × 128, or "
      "500 × 256):\n")
    w("| run | options | steps | alignment | gap closed | toy FID |")
    w("|---|---|---:|---:|---:|---:|")
    for name, r in short["runs"].items():
        w(f"| {name} | `{r['options']}` | {r['steps']:,} | {pct(r['alignment'])} | "
          f"{100 * closure(r['alignment'], short['unguided'], short['cfg5']):.0f} % | {r['toy_fid']:.2f} |")
    w("")
    finished = [rows[f"ablation:{n}"]["alignment"] for n in ABLATION if n != "reference"]
    last_two = [curve[k] for k in sorted(curve)[-2:]]
    stopped = abs(last_two[1] - last_two[0]) < 0.01  # the last checkpoints within a point
    spread = [r["alignment"] for r in short["runs"].values()]
    lr_gap = dice["alignment"] - rows["ablation:reference"]["alignment"]
    w(f"DICE gains {100 * (curve[reference['steps']] - curve[min(curve)]):.1f} points from {min(curve):,} to "
      f"{reference['steps']:,} steps and "
      + claim(stopped, "has stopped rising by the end", "is still rising at the end") + ". "
      + claim(max(finished) - min(finished) < 0.015, "Neither an average of the weights nor a cosine decay moves "
              "the finished run", "An average of the weights or a cosine decay moves the finished run")
      + f" (all within {100 * (max(finished) - min(finished)):.1f} points); the paper's lr 2e-4 is "
      f"{100 * abs(lr_gap):.1f} points {'behind' if lr_gap > 0 else 'ahead'} at {reference['steps']:,} steps; and at "
      f"equal samples the first ablation's settings lie within {100 * (max(spread) - min(spread)):.1f} points. "
      + claim(stopped and max(finished) - min(finished) < 0.015 and lr_gap > 0,
              "So the defaults stay (the paper's for real models; lr 1e-3 in the toy recipe); the options (`--ema`, "
              "`--lr-schedule`, `--warmup-steps`, `--timesteps`) are in `dice distill` for other models.") + "\n")
    nulls = json.loads(NULL_SHARE.read_text())
    shares = {"null0.2": "0.2 (the paper's)", "null0.5": "0.5", "null1": "1 (the empty prompt only: the toy recipe)"}
    w(f"**Null share**: the share of each batch distilled against the empty prompt rather than a negative from the "
      f"toy negative corpus ({nulls['steps']:,} steps × {nulls['batch_size']}), scored without and with the "
      "negative prompt at sampling:\n")
    w("| null share | alignment | toy FID | alignment with the negative prompt | toy FID |")
    w("|---|---:|---:|---:|---:|")
    for name, label in shares.items():
        a, b = nulls["rows"][f"ablation:{name}"], nulls["rows"][f"negative-ablation:{name}"]
        w(f"| {label} | {pct(a['alignment'])} | {a['toy_fid']:.2f} | {pct(b['alignment'])} | {b['toy_fid']:.2f} |")
    cfg_neg = nulls["rows"]["cfg5-negative"]
    w(f"| CFG w = 5 (40 NFE) | {pct(nulls['rows']['cfg5']['alignment'])} | {nulls['rows']['cfg5']['toy_fid']:.2f} | "
      f"{pct(cfg_neg['alignment'])} | {cfg_neg['toy_fid']:.2f} |")
    w("")
    plain_best = max(shares, key=lambda n: nulls["rows"][f"ablation:{n}"]["alignment"])
    negative_best = max(shares, key=lambda n: nulls["rows"][f"negative-ablation:{n}"]["alignment"])
    w(claim(plain_best == negative_best == "null1"
            and nulls["rows"]["negative-ablation:null1"]["alignment"] > cfg_neg["alignment"],
            "The toy negatives are other scenes' captions, which share colours, shapes and backgrounds with the "
            "prompt: learning CFG's push away from them costs alignment, with or without a negative prompt at "
            "sampling. Distilled against the empty prompt only, the enhancer is best in both columns, and with a "
            "negative prompt it stays above CFG with that prompt. The toy recipe therefore distils without "
            "negatives; recipes for real models keep the paper's 0.2 with negatives such as \"blurry, bad "
            "quality\", which name nothing a prompt asks for. Table 1's DICE + negative prompt row is the paper's "
            "setting (null share 0.2).\n"))
    w("![distillation loss](toyworld-loss.png)\n")
    w("The oracle's loss is on renders of the evaluation prompts, the enhancers' on the training cache.\n")

    w("## Where the gap goes\n")
    best_alpha = max(alphas(rows), key=lambda a: a[1])
    pndm_closed = closure(pndm["dice"]["alignment"], pndm["unguided"]["alignment"], pndm["cfg5"]["alignment"])
    w(claim(dice_closed < 0.8, f"DICE closes {100 * dice_closed:.0f} % of the gap with DPM-Solver++, short of the 80 % target")
      + ("" if fid_ok else ", and its toy FID at 20 NFE misses its target too") + ". What was measured:\n")
    null_column = [nulls["rows"][f"ablation:{n}"]["alignment"] for n in shares]
    moved = max(max(finished) - min(finished), max(spread) - min(spread), abs(lr_gap), max(null_column) - min(null_column))
    w(claim(stopped, f"- **Training** is finished: {min(curve):,} → {reference['steps']:,} steps adds "
            f"{100 * (curve[reference['steps']] - curve[min(curve)]):.1f} points and the last checkpoints agree; ")
      + f"learning rate, schedule, averaging, timestep distribution, batch and null share move it by "
      f"{100 * moved:.1f} points at most (above).")
    gd_closed = closure(rows["gd"]["alignment"], low, high)
    w(f"- **The ceiling of an embedding**: the per-prompt oracle, free to choose each prompt's embedding on that "
      f"prompt's own images, closes {100 * oracle_closed:.0f} %; DICE, one network for every prompt, "
      f"{100 * dice_closed:.0f} %. The oracle learns each prompt from its 32 images and still rises slowly; the "
      "enhancer learns from 20,000 prompts at once. "
      + claim(oracle_closed <= dice_closed + 0.1, "Neither points to a ceiling far above where DICE is."))
    w(claim(gd_closed > dice_closed + 0.1, f"- **Not the distillation itself**: GD, trained on the same CFG targets "
            f"but free to change the whole UNet, closes {100 * gd_closed:.0f} %."))
    pndm_gain, dpm_gain = pndm["cfg5"]["alignment"] - pndm["unguided"]["alignment"], high - low
    w(f"- **The sampler**: with PNDM, "
      + claim(pndm_gain < dpm_gain, "where CFG itself gains less", "where CFG itself gains as much or more")
      + f" ({pct(pndm['cfg5']['alignment'])}), DICE closes {100 * pndm_closed:.0f} % of the gap.")
    w(f"- **Strength**: alpha = {best_alpha[0]:g} is best ({pct(best_alpha[1])}); "
      + claim(best_alpha[1] < cfg["alignment"], "scaling the enhancer's change does not turn it into CFG's.")
      + f" DICE + CFG w = 2 (40 NFE) reaches {pct(rows['dice+cfg2']['alignment'])}.")
    cfg_gains = {k: rows["cfg5"]["attributes"][k] - rows["unguided"]["attributes"][k] for k in kinds}
    sharpened = sorted(cfg_gains, key=cfg_gains.get, reverse=True)[:3]
    w(f"- **Per attribute**, the shortfall is {widest[0]} and {widest[1]}"
      + claim(set(widest) <= set(sharpened), ": what CFG w = 5 sharpens most is what an embedding moves least on "
              "this model.", "."))
    fid_steps = {r["steps"]: r["toy_fid"] for r in nfe_rows(rows, "dice")}
    within = [n for n in sorted(fid_steps) if fid_steps[n] <= 1.1 * cfg["toy_fid"]]
    falls = all(nfe_rows(rows, m)[0]["toy_fid"] > max(nfe_rows(rows, m), key=lambda r: r["steps"])["toy_fid"]
                for m in ("unguided", "cfg5", "dice"))
    w(claim(falls, "- **Toy FID** falls with the number of sampling steps for every method here (unguided ")
      + f"{rows['unguided']['toy_fid']:.0f} at 20 steps, {rows['unguided-30']['toy_fid']:.0f} at 30): DICE at 20 NFE "
      f"is {100 * (dice['toy_fid'] / cfg['toy_fid'] - 1):.0f} % above CFG at 40 NFE"
      + (f"; at {within[0]} steps ({within[0]} NFE, still fewer than CFG's 40) it is {fid_steps[within[0]]:.1f}, "
         "within 10 %." if within else "; no step count tried brings it within 10 %.") + "\n")
    w(claim(abs(dice_closed - oracle_closed) < 0.1 and max(dice_closed, oracle_closed) < 0.8,
            f"On this model what an embedding carries of CFG w = 5's gain under DPM-Solver++ levels off near "
            f"{100 * max(dice_closed, oracle_closed):.0f} %, for the enhancer and the free per-prompt embedding alike; ")
      + "80 % would need a model whose text conditioning steers further (the paper measures 79.6 % on SD1.5 and "
      "85.6 % on SDXL). The evaluator was not changed to fit the method.\n")

    if ANALYSES.exists():
        analyses_section(w)
    if PCA.exists():
        pca_section(w)

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
      "scripts/toy/run_gpu.sh distill lr1e-3 cosine oracle   # three side by side (~8 min)\n"
      "scripts/toy/run_gpu.sh distill negative gd reference  # into the same /tmp/distill (~8 min)\n"
      "scripts/toy/run_gpu.sh report /tmp/distill   # every setting of this page (~3 min)\n"
      "scripts/toy/run_gpu.sh distill null0.2 null0.5 null1 && \\\n"
      "    scripts/toy/run_gpu.sh ablate /tmp/distill null0.2 null0.5 null1   # the null share (~4 min)\n"
      "scripts/toy/run_gpu.sh rebuild               # the model again, Table 1 on it (~7 min)\n"
      "python scripts/toy/write_report.py --import REPORT_DIR --import-rebuild REBUILD_DIR \\\n"
      "    --import-null-share ABLATE_DIR\n```\n")
    if REBUILD.exists():
        rebuild = json.loads(REBUILD.read_text())
        again = rebuild["build"]["unet"]
        same = again["final_loss"] == model["unet"]["final_loss"]
        agree = same and all(abs(rebuild["rows"][n]["alignment"] - rows[n]["alignment"]) < 0.005
                             for n, _ in TABLE if n in rebuild["rows"] and n in rows and n not in ("dice", "dice-negative"))
        w(claim(agree, "**A rebuild reproduces the model.**", "**A rebuild does not reproduce the model exactly.**")
          + " `run_gpu.sh rebuild` built it again from its seeds and recorded "
          f"steps ({rebuild['device']}): the UNet's final training loss is {again['final_loss']:.6f} "
          f"({'as recorded' if same else 'recorded: ' + format(model['unet']['final_loss'], '.6f')}), and on "
          "Table 1's protocol:\n")
        w("| setting | shipped build | rebuild |")
        w("|---|---:|---:|")
        for name, title in TABLE:
            if name in rebuild["rows"] and name in rows and name not in ("dice", "dice-negative"):
                w(f"| {title} | {pct(rows[name]['alignment'])}, FID {rows[name]['toy_fid']:.2f} | "
                  f"{pct(rebuild['rows'][name]['alignment'])}, FID {rebuild['rows'][name]['toy_fid']:.2f} |")
        w("")
    w(f"Seeds: world 0 (training scenes), 1 (evaluator check); text encoder 0, its pretraining 3, UNet 2; "
      f"distillation seed 0; GD seed {gd['seed']}; evaluation sets 7 (held-out pairs) and 8 (held-out phrasings); "
      f"negatives {report['negative_seed']}; ground-truth renders {report['truth_seed']}. A full rebuild (VAE "
      "included: `build_toy.py` without `--reuse`) takes about 10 minutes on one GPU. Training stages are "
      "bounded by time unless `--steps-*` are given; this build's steps are in `scripts/toy/results/`.\n")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--import", dest="run", type=Path, default=None)
    parser.add_argument("--import-rebuild", dest="rebuild", type=Path, default=None)
    parser.add_argument("--import-null-share", dest="null_share", type=Path, default=None)
    parser.add_argument("--import-analyses", dest="analyses", type=Path, default=None)
    parser.add_argument("--import-pnp", dest="pnp", type=Path, default=None)
    args = parser.parse_args()
    DOCS.mkdir(exist_ok=True)
    if args.run:
        import_run(args.run)
    if args.rebuild:
        import_rebuild(args.rebuild)
    if args.null_share:
        import_null_share(args.null_share)
    if args.analyses:
        import_analyses(args.analyses)
    if args.pnp:
        import_pnp(args.pnp)
    (DOCS / "toyworld.md").write_text(write())
    print(DOCS / "toyworld.md")


if __name__ == "__main__":
    main()
