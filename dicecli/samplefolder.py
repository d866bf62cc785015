"""The sample-folder format, read and written here only (docs/formats.md, "Sample folder").

A folder holds `NNNNNN.png` images (each with PNG text chunks and an A1111 `parameters` chunk),
`metadata.jsonl` (one record per image: `file_name`, `text` and the settings, so the folder loads as
a Hugging Face `imagefolder` and feeds `dice distill`) and `dice-sample.json` (the settings that made
every image of the folder). `dice sample` writes it; `dice eval`, `dice distill --data` and plug-ins
read it through `read_records` / `read_folder`.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from dicecli.errors import IncompatibleError, UsageError

SETTINGS_FILE = "dice-sample.json"
METADATA_FILE = "metadata.jsonl"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")

# Sampling methods: the key (folder names, JSON) and the label (tables, plots), spelled here once.
METHOD_LABELS = {"unguided": "unguided", "cfg": "CFG", "dice": "DICE", "dice+cfg": "DICE+CFG", "reference": "reference"}


def method_key(enhancer: str | None, cfg: float) -> str:
    if enhancer:
        return "dice+cfg" if cfg > 1 else "dice"
    return "cfg" if cfg > 1 else "unguided"


def safe_name(text: str) -> str:
    """A file or folder name made from a model reference or file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


@dataclass
class SampleSettings:
    """Everything that determines the images of a sample folder; a folder holds one set of settings."""

    model: str
    family: str
    enhancer: str | None
    enhancer_sha256: str | None
    alpha: float | None
    cfg: float
    negative_prompt: str
    steps: int
    scheduler: str
    seed: int
    height: int
    width: int
    num_per_prompt: int
    model_hash: str | None = None  # A1111's "Model hash" (sha256[:10] of a single-file checkpoint), where known
    enhanced_part: str | None = None  # with an enhancer: which part of the embedding it replaced (all, semantic, padding)
    clip_skip: int | None = None  # A1111's "Clip skip" where it is not 1
    embeddings: list | None = None  # textual-inversion embeddings loaded (token, file, sha256), where any
    loras: list | None = None  # LoRAs applied (name, file, sha256, scale), where any

    @property
    def nfe(self) -> int:
        """Denoiser evaluations per image (CFG doubles them)."""
        return self.steps * (2 if self.cfg > 1 else 1)

    @property
    def method(self) -> str:
        return method_key(self.enhancer, self.cfg)

    def default_folder(self, sweep: bool = False) -> Path:
        name = safe_name(Path(self.model.rstrip("/")).name)
        alpha = ("-alphas" if sweep else f"-a{self.alpha:g}") if self.enhancer else ""
        part = f"-{self.enhanced_part}" if self.enhancer and self.enhanced_part not in (None, "all") else ""
        return Path("samples") / f"{name}-{self.method}-cfg{self.cfg:g}{alpha}{part}-s{self.steps}"

    def record(self, index: int, prompt: str) -> dict:
        """The metadata.jsonl record (and PNG text chunks) of image `index`, made from `prompt`."""
        return {"file_name": image_name(index), "text": prompt, "negative_prompt": self.negative_prompt,
                "seed": self.seed + index, "model": self.model, "enhancer": self.enhancer, "alpha": self.alpha,
                "cfg": self.cfg, "steps": self.steps, "scheduler": self.scheduler, "height": self.height,
                "width": self.width, **({"model_hash": self.model_hash} if self.model_hash else {}),
                **({"clip_skip": self.clip_skip} if self.clip_skip else {}),
                **({"embeddings": self.embeddings} if self.embeddings else {}),
                **({"loras": self.loras} if self.loras else {}),
                **({"enhancer_sha256": self.enhancer_sha256, "enhanced_part": self.enhanced_part or "all"}
                   if self.enhancer else {})}


def image_name(index: int) -> str:
    return f"{index:06d}.png"


# A sweep (`dice sample --alpha 0,0.5,1`, or `--enhancer WORK_DIR`: one per checkpoint): a folder of sample
# folders, one per value, and this index, which `dice eval` expands into its members (in order) and plots as a curve.
SWEEP_FILE = "dice-sweep.json"


def sweep_member(alpha: float) -> str:
    """The folder of one strength: `alpha-1`, `alpha-0.5`; a strength that %g would round (1.0000001) is written
    exactly, so distinct strengths never share a folder."""
    short = f"{alpha:g}"
    exact = repr(float(alpha)).removesuffix(".0")
    return f"alpha-{short if float(short) == alpha else exact}"


def write_sweep(folder: Path, setting: str, values: list[float], members: list[Path]) -> None:
    from dicecli.files import atomic_path

    with atomic_path(folder / SWEEP_FILE) as tmp:
        tmp.write_text(json.dumps({"sweep": setting, "values": values,
                                   "folders": [m.name for m in members]}, indent=2))


def checkpoint_member(step: int) -> str:
    """The folder of one checkpoint of a distill work dir (`dice sample --enhancer WORK_DIR`)."""
    return f"step-{step:07d}"


def sweep_members(folder: Path) -> list[tuple[Path, dict]] | None:
    """The sample folders of a sweep folder, in the sweep's order, each with the value it was sampled at
    (`{"alpha": 0.5}`, `{"step": 500}`); None for any other folder."""
    path = folder / SWEEP_FILE
    if not path.is_file() or has_metadata(folder):
        return None
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
        setting, names, values = str(index["sweep"]), index["folders"], index["values"]
        assert len(names) == len(values)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AssertionError):
        raise UsageError(f"{path} is not a sweep index written by `dice sample`; sample the sweep again.") from None
    return [(folder / str(name), {setting: value}) for name, value in zip(names, values)]


# dicecli's sampler -> (AUTOMATIC1111's name, its schedule type): A1111 names DPM-Solver++ 2M "DPM++ 2M",
# PNDM "PLMS", and gives its k-diffusion samplers a schedule type; diffusers' default spacing of the model's
# timesteps is A1111's "Uniform" (dicecli never uses Karras sigmas).
A1111_SAMPLERS = {"dpmsolver++": ("DPM++ 2M", "Uniform"), "ddim": ("DDIM", None), "euler": ("Euler", "Uniform"),
                  "euler-a": ("Euler a", "Uniform"), "pndm": ("PLMS", None), "unipc": ("UniPC", None)}


def png_text(record: dict) -> dict[str, str]:
    """The PNG text chunks of an image: every field of its record (the caption as `prompt`), and the
    A1111 `parameters` chunk, written as AUTOMATIC1111 writes it (so that "PNG Info -> Send to txt2img" and
    other tools' importers recreate the settings), with the DICE keys after A1111's own."""
    chunks = {("prompt" if key == "text" else key): "" if value is None else str(value)
              for key, value in record.items() if key != "file_name"}
    chunks["parameters"] = a1111_parameters(record)
    return chunks


def a1111_parameters(s: dict) -> str:
    sampler, schedule = A1111_SAMPLERS.get(s["scheduler"], (s["scheduler"], None))
    lines = [s["text"]]
    if s.get("negative_prompt"):  # A1111 writes no line for an empty negative prompt
        lines.append(f"Negative prompt: {s['negative_prompt']}")
    fields = [("Steps", s["steps"]), ("Sampler", sampler), ("Schedule type", schedule), ("CFG scale", s["cfg"]),
              ("Seed", s["seed"]), ("Size", f"{s['width']}x{s['height']}"), ("Model hash", s.get("model_hash")),
              ("Model", Path(str(s["model"]).rstrip("/")).stem if s.get("model_hash") else s["model"]),
              ("Clip skip", s.get("clip_skip")),
              ("Lora hashes", ", ".join(f"{e['name']}: {e['sha256'][:12]}" for e in s["loras"]) if s.get("loras") else None),
              ("TI hashes", ", ".join(f"{e['token']}: {e['sha256'][:10]}" for e in s["embeddings"]) if s.get("embeddings") else None)]
    if s.get("enhancer"):
        fields += [("DICE enhancer", s["enhancer"]), ("DICE enhancer hash", (s.get("enhancer_sha256") or "")[:10] or None),
                   ("DICE alpha", s["alpha"])]
        if s.get("enhanced_part") not in (None, "all"):
            fields.append(("DICE part", s["enhanced_part"]))
    lines.append(", ".join(f"{key}: {_a1111_value(value)}" for key, value in fields if value is not None))
    return "\n".join(lines)


def _a1111_value(value) -> str:
    """A value as A1111 writes it: quoted (JSON) when it holds the separators of the parameters line."""
    text = str(value)
    return json.dumps(text) if any(c in text for c in ",:\n\"") else text


def read_settings(folder: Path) -> dict:
    """The folder's `dice-sample.json` ({} for a folder of images made elsewhere)."""
    path = folder / SETTINGS_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UsageError(f"{path} is not valid JSON; restore it or sample into a new folder.") from None


def read_records(folder: Path, require_text: bool = False) -> list[dict]:
    """The records of `metadata.jsonl` in order; each has `file_name` and `text` (the caption, also read from
    `caption` or `prompt` as other imagefolders name it). One sentence naming the line when one is broken."""
    path = folder / METADATA_FILE
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            record["file_name"]  # noqa: B018 - required
        except (json.JSONDecodeError, KeyError, TypeError):
            raise UsageError(f"{path} line {number} needs JSON with 'file_name' and 'text'; fix that line.") from None
        text = record.get("text", record.get("caption", record.get("prompt")))
        if require_text and not isinstance(text, str):
            raise UsageError(f"{path} line {number} has no 'text' caption; add one.")
        record["text"] = text if isinstance(text, str) else ""
        records.append(record)
    return records


def has_metadata(folder: Path) -> bool:
    return (folder / METADATA_FILE).is_file()


@dataclass
class FolderContents:
    """What a folder of images holds: its images in order, their prompts, and its sampling settings."""

    path: Path
    images: list[Path]
    prompts: list[str]
    settings: dict

    @property
    def prompt_set(self) -> str:
        """A short name for this folder's prompts (in order): rows of different prompt sets are never one curve."""
        import hashlib

        return hashlib.sha256("\n".join(self.prompts).encode("utf-8")).hexdigest()[:8]

    @property
    def label(self) -> dict:
        """What tells this folder's row apart: the folder itself, its model, method and enhancer."""
        s = self.settings
        method = METHOD_LABELS[method_key(s.get("enhancer"), s.get("cfg", 1)) if s else "reference"]
        nfe = s.get("steps", 0) * (2 if s.get("cfg", 1) > 1 else 1) if s.get("steps") else None
        part = s.get("enhanced_part") if s.get("enhanced_part") not in (None, "all") else None
        return {"folder": str(self.path), "model": s.get("model"), "method": method, "enhancer": s.get("enhancer"),
                "part": part, "cfg": s.get("cfg"), "alpha": s.get("alpha"), "steps": s.get("steps"), "nfe": nfe}


def read_folder(folder: Path) -> FolderContents:
    """A sample folder (metadata.jsonl order), or any folder of images (name order, no prompts)."""
    if has_metadata(folder):
        records = read_records(folder)
        images, prompts = [folder / r["file_name"] for r in records], [r["text"] for r in records]
    else:
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        prompts = [""] * len(images)
    return FolderContents(folder, images, prompts, read_settings(folder))


def holds_images(folder: Path) -> bool:
    metadata = folder / METADATA_FILE
    return any(folder.glob("[0-9]*.png")) or (metadata.exists() and bool(metadata.read_text(encoding="utf-8").strip()))


def open_for_writing(folder: Path, settings: SampleSettings, prompts: list[str]) -> dict[int, dict]:
    """Create or re-open a sample folder for `settings`; return the records of the images already there.

    A folder made with other settings, or whose images belong to other prompts, is refused: a folder
    holds one set of settings, and image i is always prompt i // num_per_prompt with seed + i."""
    from dicecli.files import atomic_path, remove_stale_temporaries

    settings_path = folder / SETTINGS_FILE
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"Output {folder} is a file; give a folder to -o.")
    if folder.is_dir():
        remove_stale_temporaries(folder, pattern="*")  # half-written files of a killed run
    if folder.is_dir() and any(folder.iterdir()) and not settings_path.exists():
        raise UsageError(f"Folder {folder} is not empty and is not a dice sample folder; choose another -o.")
    wanted = asdict(settings)
    if settings_path.exists() and not holds_images(folder):
        settings_path.unlink()  # a run that failed before its first image: nothing to keep consistent with
    if settings_path.exists():
        saved = read_settings(folder)
        # a setting added since the folder was made (e.g. model_hash) is not a change
        changed = [k for k in wanted if k in saved and saved[k] != wanted[k]]
        if changed:
            raise IncompatibleError(
                f"Folder {folder} holds samples made with other settings: "
                f"{'; '.join(f'{k} was {saved[k]!r} there, is {wanted[k]!r} now' for k in changed)}; "
                "choose another -o or use the same settings."
            )
    folder.mkdir(parents=True, exist_ok=True)
    if not settings_path.exists():
        with atomic_path(settings_path) as tmp:
            tmp.write_text(json.dumps(wanted, indent=2))
    done = read_done(folder, settings, prompts)
    parts = read_metadata_parts(folder)  # left by a job of several processes that was killed
    if parts:
        done |= {i: r for i, r in _checked(folder, settings, prompts, list(parts.values())).items() if i not in done}
        write_metadata(folder, done)
        remove_metadata_parts(folder)
    return done


def read_done(folder: Path, settings: SampleSettings, prompts: list[str]) -> dict[int, dict]:
    """The records of the images already in an opened sample folder, by image index."""
    return _checked(folder, settings, prompts, read_records(folder)) if has_metadata(folder) else {}


def _checked(folder: Path, settings: SampleSettings, prompts: list[str], records: list[dict]) -> dict[int, dict]:
    done: dict[int, dict] = {}
    for record in records:
        if not Path(record["file_name"]).stem.isdigit():
            raise UsageError(f"Folder {folder} lists {record['file_name']} in {METADATA_FILE}, which dice sample never "
                             "writes; choose another -o.")
        index = int(Path(record["file_name"]).stem)
        expected = prompts[index // settings.num_per_prompt] if index // settings.num_per_prompt < len(prompts) else None
        if record["text"] != expected:
            raise IncompatibleError(
                f"Folder {folder} holds image {record['file_name']} of prompt {record['text']!r}, but this prompt "
                "list has another prompt there; choose another -o."
            )
        if (folder / record["file_name"]).is_file():
            done[index] = record
    return done


def write_metadata(folder: Path, records: dict[int, dict], name: str = METADATA_FILE) -> None:
    """Rewrite metadata.jsonl (or `name`) atomically with `records` in image order."""
    from dicecli.files import atomic_path

    with atomic_path(folder / name) as tmp:
        tmp.write_text("".join(json.dumps(records[i]) + "\n" for i in sorted(records)), encoding="utf-8")


# Under several processes each writes the records of its images here; the main process joins them into
# metadata.jsonl at the end (or the next run at its start, after a killed job): docs/distributed.md.
METADATA_PART = ".metadata-rank{:05d}.jsonl"


def write_metadata_part(folder: Path, rank: int, records: dict[int, dict]) -> None:
    write_metadata(folder, records, METADATA_PART.format(rank))


def read_metadata_parts(folder: Path) -> dict[int, dict]:
    records: dict[int, dict] = {}
    for part in sorted(folder.glob(METADATA_PART.replace("{:05d}", "*"))):
        for line in part.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                records[int(Path(record["file_name"]).stem)] = record
    return records


def remove_metadata_parts(folder: Path) -> None:
    for part in folder.glob(METADATA_PART.replace("{:05d}", "*")):
        part.unlink(missing_ok=True)


def save_image(image, path: Path, record: dict) -> None:
    """One PNG with its record as text chunks, written atomically."""
    from PIL.PngImagePlugin import PngInfo

    from dicecli.files import atomic_path

    info = PngInfo()
    for key, value in png_text(record).items():
        info.add_text(key, value)
    with atomic_path(path, clean=False) as tmp:  # the folder's stale temporaries went at the start of the run
        # Lossless either way; level 3 keeps PNG encoding off the critical path at 512 px and above.
        image.save(tmp, format="PNG", pnginfo=info, compress_level=3)
