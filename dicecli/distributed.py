"""Several processes on one node or many (torchrun, accelerate launch, Slurm): who does which work, and how
the processes agree (docs/distributed.md).

A stage cuts its work into units that do not depend on the process count (the batches a single process would
make: image i's batch is i // batch_size, a cache's rows in batches of --batch-size, images in feature batches),
deals them to the ranks (`Group.deal`), and meets the other ranks only at a few named points (`Group.meet`):
after the main process opened the output, and at the end. Results travel through the output's filesystem
(PNGs, part files beside a cache), so nothing large passes through the launcher's network; the meeting points
and failures use the launcher's key-value store.

A rank that fails records one sentence in the store; the others stop at their next batch or meeting point,
silently, so the job prints that sentence once (`report_failure`). A rank that dies without a word is noticed
at the next meeting point after DICE_DIST_TIMEOUT seconds (default 1800), never a hang.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Sequence, TypeVar

from dicecli.errors import DiceError, UsageError

T = TypeVar("T")
TIMEOUT_ENV = "DICE_DIST_TIMEOUT"
DEFAULT_TIMEOUT = 1800.0
POLL_SECONDS = 0.05


class RankFailed(DiceError):
    """Another rank failed and said why; this rank stops without repeating it."""


class RankTimeout(DiceError):
    """Ranks did not reach a meeting point in time (died without a word, or hang)."""


@dataclass
class Group:
    """This process's place in the job: rank, world size, local rank (its GPU on its node)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    store: Any = field(default=None, repr=False)  # the launcher's key-value store (None for one process)
    timeout: float = DEFAULT_TIMEOUT
    _meetings: int = field(default=0, repr=False)
    _done: int = field(default=0, repr=False)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def several(self) -> bool:
        return self.world > 1

    def deal(self, units: Sequence[T]) -> list[T]:
        """This rank's share of `units`: a contiguous run, the shares differing by at most one unit."""
        base, extra = divmod(len(units), self.world)
        start = self.rank * base + min(self.rank, extra)
        return list(units[start : start + base + (self.rank < extra)])

    def meet(self, point: str, payload: Any = None) -> list[Any]:
        """Wait until every rank reached `point`; return each rank's (JSON) payload in rank order.

        Raises RankFailed when another rank failed meanwhile, RankTimeout when some did not come in time."""
        if not self.several:
            return [payload]
        self._meetings += 1
        key = f"meet/{self._meetings}"
        self.store.set(f"{key}/{self.rank}", json.dumps(payload))
        self.store.add(f"{key}/count", 1)
        deadline = time.monotonic() + self.timeout
        while self.store.add(f"{key}/count", 0) < self.world:
            self.check()
            if time.monotonic() > deadline:
                absent = [r for r in range(self.world) if not self.store.check([f"{key}/{r}"])]
                raise RankTimeout(
                    f"rank{'s' if len(absent) > 1 else ''} {', '.join(map(str, absent))} did not reach {point} within "
                    f"{self.timeout:.0f} s of this one: {'they' if len(absent) > 1 else 'it'} died without a word (killed, "
                    f"out of memory) or hang; see that node's log (set {TIMEOUT_ENV} to wait longer)."
                )
            time.sleep(POLL_SECONDS)
        self.check()
        return [json.loads(self.store.get(f"{key}/{r}")) for r in range(self.world)]

    def gather(self, point: str, value: Any) -> list[Any] | None:
        """Every rank's `value` (any picklable data, e.g. feature arrays), in rank order, on the main process
        (None on the others). The meeting first makes sure every rank is alive and here."""
        if not self.several:
            return [value]
        import torch.distributed as dist

        self.meet(point)
        values = [None] * self.world if self.main else None
        dist.gather_object(value, values, dst=0)
        return values

    def check_shared(self, path, made_by: str) -> None:
        """After a meeting: `path`, which the main process made, must be visible here (several nodes need a
        filesystem they all share for the one output)."""
        from pathlib import Path

        if self.several and not self.main and not Path(path).exists():
            raise UsageError(f"This process cannot see {path}, which the main process created {made_by}; with several "
                             "nodes the output must be on a filesystem they all share.")

    def check(self) -> None:
        """Stop (RankFailed) when another rank has failed: called between batches, so no rank works on in vain."""
        if self.several and self.store.add("failures", 0) > 0:
            raise RankFailed(self.store.get("failure").decode())

    def progress(self, done: int) -> int:
        """Add this rank's newly finished units to the job's count; return the job's count so far."""
        self._done += done
        return int(self.store.add("progress", done)) if self.several else self._done

    def fail(self, sentence: str) -> bool:
        """Record this rank's failure; True when it is the job's first (the one to print)."""
        if self.store.add("failures", 1) == 1:
            self.store.set("failure", f"rank {self.rank} of {self.world} on {socket.gethostname()}: {sentence}")
            return True
        return False

    def close(self) -> None:
        """Leave the job: the main process waits for the others first, as its store may be the one they use."""
        if not self.several:
            return
        try:
            self.store.add("closed", 1)
        except Exception:  # noqa: BLE001 - the store's host has gone: there is no one left to wait for
            return
        if self.main:
            deadline = time.monotonic() + self.timeout
            while self.store.add("closed", 0) < self.world and self.store.add("failures", 0) == 0:
                if time.monotonic() > deadline:
                    break
                time.sleep(POLL_SECONDS)


_group: Group | None = None


def launched_world() -> int:
    """The process count a launcher (torchrun, accelerate launch, srun with the torch variables) set, else 1."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def current() -> Group:
    """This process's group, joined on first use (one process: a group of one)."""
    global _group
    if _group is None:
        _group = _join() if launched_world() > 1 else Group()
    return _group


def joined() -> Group | None:
    """The group if this process has joined one, without joining (for the error path)."""
    return _group


def _join() -> Group:
    import torch.distributed as dist

    try:
        timeout = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT))
    except ValueError:
        raise DiceError(f"{TIMEOUT_ENV}={os.environ[TIMEOUT_ENV]!r} is not a number of seconds; set it to e.g. 1800.") from None
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise DiceError(f"WORLD_SIZE is {launched_world()} but {', '.join(missing)} are not set; launch dice with torchrun "
                        "or accelerate launch (or set the torch.distributed variables, as under Slurm: docs/distributed.md).")
    if not dist.is_initialized():
        # gloo on the CPU whatever the device: dicecli's processes exchange only small messages through the store
        dist.init_process_group("gloo", timeout=timedelta(seconds=timeout))
    from torch.distributed.distributed_c10d import _get_default_store  # the rendezvous store, public in all but name

    store = dist.PrefixStore("dicecli", _get_default_store())
    return Group(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", 0)),
                 store=store, timeout=timeout)


def report_failure(sentence: str) -> str | None:
    """The line to print for this rank's failure, or None when another rank's failure already said it."""
    group = joined()
    if group is None or not group.several:
        return sentence
    try:
        first = group.fail(sentence)
    except Exception:  # noqa: BLE001 - the store is gone (its host exited): say it here rather than nothing
        return f"rank {group.rank} of {group.world}: {sentence}"
    if not first:
        return None
    line = f"rank {group.rank} of {group.world} on {socket.gethostname()}: {sentence}"
    _tell_launcher(line)
    return line


def _tell_launcher(line: str) -> None:
    """torchrun's failure summary shows the first failure's error file: make it the sentence, not a traceback."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if path:
        try:
            with open(path, "w") as f:
                json.dump({"message": {"message": line, "extraInfo": {"timestamp": str(int(time.time()))}}}, f)
        except OSError:
            pass


def stand_down() -> None:
    """A rank that stops for another's failure leaves a moment later, so launchers name the failing rank first."""
    time.sleep(3)


def refuse_stdio(what: str) -> None:
    """Standard input and output belong to one process: several ranks cannot share them."""
    if launched_world() > 1:
        raise UsageError(f"{what} cannot be standard input or output when dice runs as several processes; give a file.")
