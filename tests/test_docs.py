"""The README and docs say what the repository does: the main job is the script, CI runs the README's test
command, measured numbers are the recorded ones, and every linked page exists."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, re.S)


def test_readme_is_short_and_set_up_is_two_commands():
    assert len(README.splitlines()) <= 250
    setup = README.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    assert [block.strip() for block in code_blocks(setup)] == [
        "pip install -e . && bash examples/toy-job.sh", 'pip install -e ".[test]" && python -m pytest -q --slow']


def test_ci_runs_the_readme_test_command_verbatim():
    command = code_blocks(README.split("## Set-up", 1)[1])[1].strip()
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_main_job_in_the_readme_is_the_script_one_step_per_line():
    steps = code_blocks(README.split("## The main job, step by step", 1)[1])[0].strip().splitlines()
    script = [line for line in (ROOT / "examples" / "toy-job.sh").read_text().splitlines()
              if line.strip() and not line.startswith(("#", "set "))]
    assert steps == script and len(steps) == 6
    assert all("&&" not in step and len(step) < 120 for step in steps)
    assert (ROOT / "examples" / "toy-prompts.txt").read_text().count("\n") == 8


def test_readme_numbers_are_the_recorded_toy_report():
    report = json.loads((ROOT / "scripts" / "toy" / "results" / "report-h200-2026-11-27.json").read_text())
    rows = {r["name"]: r for r in report["rows"] if r["prompt_set"] == "held_out_pairs" and not r["negative_prompt"]
            and r["scheduler"] == "dpmsolver++"}
    unguided, cfg, dice = (rows[n]["alignment"] * 100 for n in ("unguided", "cfg5", "dice"))
    closed = (dice - unguided) / (cfg - unguided) * 100
    stated = f"**{dice:.1f} %** alignment at {rows['dice']['nfe']}\nevaluations per image, against **{unguided:.1f} %** " \
             f"unguided and **{cfg:.1f} %** for CFG at {rows['cfg5']['nfe']}: DICE closes\n**{closed:.0f} %** of the gap"
    assert " ".join(stated.split()) in " ".join(README.split())
    assert f"{report['prompt_sets']['held_out_pairs']['prompts']:,} held-out prompts" in README


def test_every_linked_page_exists():
    for page in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


def test_no_page_points_outside_the_repository():
    for page in [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "dicecli").rglob("*.py")]:
        assert "../shared" not in page.read_text(encoding="utf-8"), page


def test_cited_sections_exist():
    """Code and docs cite pages as (docs/PAGE.md, "Section"): the section must be a heading of that page."""
    cited = re.compile(r'(docs/[\w-]+\.md), "([^"]+)"')
    files = [*(ROOT / "dicecli").rglob("*.py"), *(ROOT / "scripts").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py"),
             *(ROOT / "tests").glob("*.py"), *(ROOT / "docs").glob("*.md"), ROOT / "README.md"]
    found = 0
    for path in files:
        for page, section in cited.findall(path.read_text(encoding="utf-8")):
            if page == "docs/PAGE.md":
                continue  # this test's own docstring
            headings = [line.lstrip("#").strip().strip("`") for line in (ROOT / page).read_text(encoding="utf-8").splitlines()
                        if line.startswith("#")]
            assert any(section.strip("`") in h for h in headings), f"{path.name} cites {page}, \"{section}\": no such heading"
            found += 1
    assert found >= 5


def test_cited_tests_exist():
    """Docs and code name test files and tests that exist."""
    files = {p.relative_to(ROOT).as_posix() for p in (ROOT / "tests").rglob("*.py")}
    names = {m for path in (ROOT / "tests").rglob("test_*.py") for m in re.findall(r"def (test_\w+)", path.read_text())}
    stems = {Path(f).stem for f in files}
    for path in [*(ROOT / "scripts").rglob("*.py"), *(ROOT / "docs").glob("*.md"), *(ROOT / "dicecli").rglob("*.py"),
                 ROOT / "README.md"]:
        text = path.read_text(encoding="utf-8")
        for cited in re.findall(r"\btests/[\w/]+\.py", text):
            assert cited in files, f"{path.name} cites {cited}, which does not exist"
        for name in re.findall(r"\b(test_\w+)\b", text):
            assert name in names or name in stems, f"{path.name} cites {name}, which does not exist"


def test_reliability_page_states_the_recorded_check_cost():
    recorded = json.loads((ROOT / "benchmarks" / "results" / "cache-check-cpu.json").read_text())
    page = " ".join((ROOT / "docs" / "reliability.md").read_text(encoding="utf-8").split())
    stated = (f"reading a cache of {recorded['prompts']:,} prompts (77 × {recorded['shape'][1]}, float16, "
              f"{recorded['file_mb']:,} MB) takes {recorded['read_seconds']:.2f} s, and checking every number read takes "
              f"{recorded['check_seconds']:.2f} s more ({100 * recorded['overhead']:.1f} %)")
    assert stated in page


def test_distributed_page_states_the_recorded_numbers():
    rows = [json.loads(line) for line in (ROOT / "benchmarks" / "results" / "distributed-h200-2026-12-01.jsonl").read_text().splitlines()]
    page = " ".join((ROOT / "docs" / "distributed.md").read_text(encoding="utf-8").split())
    sample = next(r for r in rows if r.get("stage", "").startswith("sample"))
    encode = next(r for r in rows if r.get("stage", "").startswith("encode"))
    assert f"one process {sample['one_process_s']:.1f} s" in page and f"{sample['two_processes_s']:.1f} s (torchrun)" in page
    assert f"{sample['accelerate_two_s']:.1f} s (accelerate launch)" in page
    assert f"one process {encode['one_process_s']:.1f} s, two processes (same GPU) {encode['two_processes_s']:.1f} s" in page
    identity = next(r for r in rows if "cache_identical" in r)
    assert identity["cache_identical"] and identity["torchrun_images_identical"] and identity["accelerate_images_identical"]
    for arch, name in (("pixart", "PixArt-α 512²"), ("sd15", "SD1.5 512²")):
        cells = [f"{r['step_ms']:.1f} ms/step, {r['max_memory_gb']:.1f} GB" for text in ("per-step", "cached")
                 for r in rows if r.get("arch") == arch and r.get("text") == text]
        assert f"| {name}" in page and all(cell in page for cell in cells), (arch, cells)


def test_python_page_states_the_recorded_offload_cases():
    path = ROOT / "benchmarks" / "results" / "api-offload-h200-2026-12-02.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()][1:]
    page = " ".join((ROOT / "docs" / "python.md").read_text(encoding="utf-8").split())
    ok, exact = sum(r["ok"] for r in rows), sum(1 for r in rows if r.get("max_abs_diff_255") == 0.0)
    compiled = max(r["max_abs_diff_255"] for r in rows if "compile" in r["case"])
    assert f"{ok} of {len(rows)} cases ran" in page and f"({exact} cases at a difference of 0)" in page
    assert f"at most {compiled:.2f}/255" in page
    offload = [r for r in rows if "offload" in r["case"]]
    assert len(offload) == 16 and all(r["ok"] and r["max_abs_diff_255"] == 0.0 for r in offload)


def test_readme_states_the_measured_times():
    """The README's times and counts are the recorded ones (benchmarks/results/first-hour-cpu-2026-12-02.json)."""
    recorded = json.loads((ROOT / "benchmarks" / "results" / "first-hour-cpu-2026-12-02.json").read_text())
    text = " ".join(README.split())
    assert f"measured {recorded['main_job_s'] / 60:.1f} minutes on a 2-core CPU" in text
    assert (f"measured {recorded['suite_s'] / 60:.1f} minutes for {recorded['suite_tests']} tests on an idle 2-core "
            "machine") in text
    spread = max(abs(s / recorded["suite_s"] - 1) for s in recorded["suite_s_other_runs"])
    assert spread <= 0.1 and "±10 % between runs" in text
    assert f"the fast set of {recorded['fast_set_tests']} took {recorded['fast_set_s'] / 60:.1f})" in text
    script = (ROOT / "examples" / "toy-job.sh").read_text()
    assert f"Measured {recorded['main_job_s'] / 60:.1f} minutes on a 2-core CPU" in script
