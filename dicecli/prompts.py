"""Reading prompt lists: .txt, .jsonl, COCO captions .json, or standard input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dicecli.errors import UsageError

TEXT_FIELDS = ("prompt", "text", "caption")


def read_prompts(source: str, name: str | None = None) -> list[str]:
    """Return the prompts of `source` in order; `-` reads standard input. `name` is how errors call it."""
    if source == "-":
        from dicecli.files import refuse_stdio

        refuse_stdio("PROMPTS")
        raw = sys.stdin.buffer.read()
        name = "standard input"
        suffix = ".jsonl" if raw.lstrip().startswith(b"{") else ".txt"
    else:
        path = Path(source)
        name = name or str(path)
        if not path.exists():
            raise UsageError(f"Prompt file {path} does not exist; check the path.")
        if path.is_dir():
            raise UsageError(f"Prompt input {path} is a folder; give a .txt, .jsonl or COCO captions .json file.")
        suffix = path.suffix.lower()
        if suffix not in (".txt", ".jsonl", ".json", ".prompts", ""):
            raise UsageError(
                f"Prompt file {path} has an unknown type '{suffix}'; use .txt (one prompt per line), "
                ".jsonl (a 'prompt', 'text' or 'caption' field) or a COCO captions .json."
            )
        raw = path.read_bytes()
    if not raw:
        raise UsageError(f"Prompt input {name} is empty; give at least one prompt.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UsageError(
            f"Prompt input {name} is not UTF-8 text (bad byte at offset {error.start}); re-save it as UTF-8."
        ) from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise UsageError(f"Prompt input {name} has a NUL byte on line {line} (binary data?); remove it or give a text file.")

    if suffix == ".jsonl":
        prompts = _from_jsonl(text, name)
    elif suffix == ".json":
        prompts = _from_json(text, name)
    else:
        prompts = [line.strip() for line in text.splitlines()]
    prompts = [p for p in prompts if p]
    if not prompts:
        raise UsageError(f"Prompt input {name} has no prompts left after skipping blank lines; add at least one.")
    return prompts


def _field(record: object, name: str, where: str) -> str:
    if isinstance(record, str):
        return record.strip()
    if isinstance(record, dict):
        for key in TEXT_FIELDS:
            if isinstance(record.get(key), str):
                return record[key].strip()
    raise UsageError(f"{name}{where} has no 'prompt', 'text' or 'caption' string field; add one.")


def _from_jsonl(text: str, name: str) -> list[str]:
    prompts = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise UsageError(f"{name} line {number} is not valid JSON ({error.msg}); fix or remove that line.") from None
        prompts.append(_field(record, name, f" line {number}"))
    return prompts


def _from_json(text: str, name: str) -> list[str]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(
            f"{name} is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}); fix the file."
        ) from None
    if isinstance(document, dict) and isinstance(document.get("annotations"), list):
        records = document["annotations"]  # COCO captions layout
    elif isinstance(document, list):
        records = document
    else:
        raise UsageError(
            f"{name} is neither a COCO captions file (an 'annotations' list) nor a JSON list of prompts; "
            "convert it to one of those or to .txt/.jsonl."
        )
    return [_field(record, name, f" entry {index}") for index, record in enumerate(records)]


def negative_corpus(spec: str) -> tuple[list[str], str]:
    """`--negative-prompts builtin|none|FILE`: (prompts, the name an enhancer's metadata records). A corpus is a
    prompts file read as every prompts file is, in which lines starting with # are comments and repeats count once."""
    from importlib import resources

    if spec == "none":
        return [], "null"
    if spec == "builtin":
        path, name = Path(str(resources.files("dicecli.corpora").joinpath("negative_prompts.txt"))), "builtin-v1"
    else:
        path, name = Path(spec), Path(spec).name
        if not path.is_file():
            raise UsageError(f"--negative-prompts {spec}: no such file; give builtin, none or a .txt file with one "
                             "prompt per line.")
    prompts = unique([p for p in read_prompts(str(path), name=f"--negative-prompts file {path}") if not p.startswith("#")])
    if not prompts:
        raise UsageError(f"--negative-prompts {spec} holds no prompts; add at least one per line.")
    return prompts, name


def unique(prompts: list[str]) -> list[str]:
    """The prompts in order, each once (a prompt list keys caches and sample folders by text)."""
    return list(dict.fromkeys(prompts))


def open_input(source: str) -> tuple[str, Path | None]:
    """('cache', path) for an HDF5 embedding cache (stdin is spooled to a file), else ('prompts', path or None)."""
    from dicecli.cache import is_hdf5
    from dicecli.files import stdin_to_file

    if source == "-":
        from dicecli.files import refuse_stdio

        refuse_stdio("INPUT")
        spooled = stdin_to_file()
        if is_hdf5(spooled):
            return "cache", spooled
        with open(spooled, "rb") as f:
            suffix = ".jsonl" if f.read(4096).lstrip().startswith(b"{") else ".txt"
        return "prompts", spooled.rename(spooled.with_suffix(suffix))
    path = Path(source)
    return ("cache", path) if path.suffix == ".h5" or is_hdf5(path) else ("prompts", None)
