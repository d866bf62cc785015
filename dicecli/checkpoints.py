"""A `dice distill` work dir (docs/formats.md, "Training work dir"): checkpoints that `--resume` continues from exactly, and
the training log. Everything is safetensors or JSON, never a pickle: the optimizer's state is kept as one tensor per
(parameter, statistic), the RNG state and the EMA average as tensors beside it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from dicecli import faults
from dicecli.enhancer import save_enhancer

CHECKPOINTS_KEPT = 2


def training_state(optimizer: torch.optim.Optimizer, ema=None) -> dict[str, torch.Tensor]:
    """What a checkpoint keeps beside the enhancer, as tensors: the optimizer's per-parameter state (`state.I.NAME`;
    its hyper-parameters come from the settings), the global RNG state and the EMA average (`ema.I`)."""
    tensors = {f"state.{i}.{k}": v for i, s in optimizer.state_dict()["state"].items() for k, v in s.items()}
    tensors["rng.torch"] = torch.get_rng_state()
    if ema is not None:
        tensors |= {f"ema.{i}": p for i, p in enumerate(ema.shadow_params)}
        tensors["ema.optimization_step"] = torch.tensor(ema.optimization_step)
    return tensors


def restore_training_state(tensors: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer, ema=None) -> None:
    state = optimizer.state_dict()
    for key, value in tensors.items():
        if key.startswith("state."):
            _, index, name = key.split(".", 2)
            state["state"].setdefault(int(index), {})[name] = value
    optimizer.load_state_dict(state)
    torch.set_rng_state(tensors["rng.torch"])
    if ema is not None:
        for i, p in enumerate(ema.shadow_params):
            p.copy_(tensors[f"ema.{i}"])
        ema.optimization_step = int(tensors["ema.optimization_step"])


class WorkDir:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.log = self.path / "train_log.jsonl"

    def save(self, step: int, enhancers: dict[str, tuple], tensors: dict[str, torch.Tensor], trainer: dict,
             keep: int = CHECKPOINTS_KEPT) -> Path:
        """`checkpoints/step-NNNNNNN/`, made beside its final name and renamed into place: each enhancer file (name ->
        (enhancer, metadata)), `optimizer.safetensors` and `trainer.json`. Only the newest `keep` stay (0: all)."""
        final = self.checkpoints / f"step-{step:07d}"
        staging = self.checkpoints / f".step-{step:07d}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name, (enhancer, metadata) in enhancers.items():
            save_enhancer(enhancer, staging / name, **metadata)
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(staging / "optimizer.safetensors"))
        (staging / "trainer.json").write_text(json.dumps(trainer, indent=2))
        faults.point(f"write:{final.name}")
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
        for old in sorted(self.checkpoints.glob("step-*"))[:-keep] if keep else []:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def done(self) -> list[Path]:
        """Every complete checkpoint, oldest first (a checkpoint is complete once its trainer.json is written)."""
        return sorted(p for p in self.checkpoints.glob("step-*") if (p / "trainer.json").is_file())

    def latest(self) -> Path | None:
        done = sorted(p for p in self.checkpoints.glob("step-*") if (p / "trainer.json").is_file())
        return done[-1] if done else None

    def has_checkpoints(self) -> bool:
        return self.checkpoints.is_dir() and any(self.checkpoints.glob("step-*"))

    @staticmethod
    def read(checkpoint: Path) -> tuple[dict, dict[str, torch.Tensor]]:
        """A checkpoint's trainer.json and its optimizer/RNG/EMA tensors (the enhancer is read with its checks)."""
        return json.loads((checkpoint / "trainer.json").read_text()), load_file(str(checkpoint / "optimizer.safetensors"))

    def start_log(self, step: int) -> None:
        """Keep the log's records up to `step` (those after the checkpoint a run resumes from are redone)."""
        self.path.mkdir(parents=True, exist_ok=True)
        if self.log.exists():
            kept = [line for line in self.log.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
            self.log.write_text("".join(line + "\n" for line in kept))

    def append_log(self, record: dict) -> None:
        with open(self.log, "a") as log:
            log.write(json.dumps(record) + "\n")
