"""Several processes on one node or many (torchrun, accelerate launch, Slurm), on torch.distributed's and
accelerate's primitives (docs/distributed.md): work in units that do not depend on the process count, dealt with
`split_between_processes`; a few named meeting points (`monitored_barrier`, then `all_gather_object` of the point's
name and payload); results through the output's filesystem. Every stage joins the same way, `dice distill` too.
Ours is only the failure channel: a failing rank records one sentence in the launcher's store, and the others stop
at their next batch or meeting point, silently, so the job prints it once (`report_failure`)."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Sequence, TypeVar

from dicecli.errors import DiceError, UsageError

T = TypeVar("T")
TIMEOUT_ENV = "DICE_DIST_TIMEOUT"
DEFAULT_TIMEOUT = 1800.0
LAUNCH_HELP = ("launch dice with torchrun or accelerate launch, or set RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT "
               "for every rank, as under Slurm (docs/distributed.md)")


class RankFailed(DiceError):
    """Another rank failed and said why; this rank stops without repeating it."""


class RankTimeout(DiceError):
    """Ranks did not reach a meeting point in time (died without a word, or hang)."""


class LaunchError(UsageError):
    """The launch itself is wrong (variables missing or out of range, ranks that never came): every rank says so."""


@dataclass
class Group:
    """This process's place in the job: rank, world size, local rank (its GPU on its node)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    store: Any = field(default=None, repr=False)  # the launcher's key-value store: the failure channel
    meetings: Any = field(default=None, repr=False)  # the gloo process group the meetings run on
    timeout: float = DEFAULT_TIMEOUT
    _done: int = field(default=0, repr=False)
    _visits: Counter = field(default_factory=Counter, repr=False)  # meeting point -> times reached

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def several(self) -> bool:
        return self.world > 1

    def deal(self, units: Sequence[T]) -> list[T]:
        """This rank's share of `units`: a contiguous run, the shares differing by at most one unit."""
        from accelerate import PartialState

        if not self.several:
            return list(units)
        with PartialState().split_between_processes(list(units)) as share:
            return list(share)

    def meet(self, point: str, payload: Any = None) -> list[Any]:
        """Wait until every rank reached `point`; return each rank's payload in rank order. Raises RankFailed when
        another rank failed meanwhile, RankTimeout naming the ranks that did not come in time."""
        if not self.several:
            return [payload]
        import torch.distributed as dist

        self.check()
        self._visits[point] += 1
        arrival = f"at/{point}#{self._visits[point]}/"
        self.store.set(f"{arrival}{self.rank}", "")  # who came, for the sentence when some did not
        try:
            dist.monitored_barrier(self.meetings, timeout=timedelta(seconds=self.timeout), wait_all_ranks=True)
            arrived: list[Any] = [None] * self.world
            dist.all_gather_object(arrived, (point, payload), group=self.meetings)
        except RuntimeError:  # a rank died, hangs, or failed and left (then the store says why)
            self.check()
            try:  # the store's host (rank 0's node) may have gone too
                absent = [str(r) for r in range(self.world) if not self.store.check([f"{arrival}{r}"])] or ["0"]
            except Exception:  # noqa: BLE001
                absent = ["0"]
            raise RankTimeout(f"rank{'s' * (len(absent) > 1)} {', '.join(absent)} did not reach {point} within "
                              f"{self.timeout:.0f} s of this one: died without a word (killed, out of memory) or hang; "
                              f"see that node's log (set {TIMEOUT_ENV} to wait longer).") from None
        self.check()
        elsewhere = {p for p, _ in arrived if p != point}
        if elsewhere:
            raise DiceError(f"the ranks met at different points ({point!r} here, {', '.join(map(repr, elsewhere))} "
                            "elsewhere): they run different versions of dicecli or different commands.")
        return [p for _, p in arrived]

    def gather(self, point: str, value: Any) -> list[Any] | None:
        """Every rank's picklable `value` in rank order on the main process (None elsewhere), after a meeting."""
        if not self.several:
            return [value]
        import torch.distributed as dist

        self.meet(point)
        values = [None] * self.world if self.main else None
        dist.gather_object(value, values, dst=0, group=self.meetings)
        return values

    def check(self) -> None:
        """Stop (RankFailed) when another rank has failed: called between batches, so no rank works on in vain."""
        if self.several and self.store.add("failures", 0) > 0:
            raise RankFailed(self.store.get("failure").decode())

    def progress(self, done: int) -> int:
        """Add this rank's newly finished units to the job's count; return the job's count so far."""
        self._done += done
        return int(self.store.add("progress", done)) if self.several else self._done

    def fail(self, line: str) -> bool:
        """Record this rank's failure; True when it is the job's first (the one to print)."""
        first = self.store.add("failures", 1) == 1
        if first:
            self.store.multi_set(["failure", "failed_at"], [line, str(time.time())])
        return first

    def close(self) -> None:
        """Leave the job: a final barrier when all went well (rank 0 may host the others' store), then destroy it."""
        import torch.distributed as dist

        if self.several:
            with contextlib.suppress(Exception):  # a rank or the store's host has gone: no one left to wait for
                if self.store.add("failures", 0) == 0:
                    dist.monitored_barrier(self.meetings, timeout=timedelta(seconds=self.timeout), wait_all_ranks=True)
            dist.destroy_process_group()


_group: Group | None = None


def launched_world() -> int:
    """The process count a launcher (torchrun, accelerate launch, srun with the torch variables) set, else 1."""
    world = os.environ.get("WORLD_SIZE", "1")
    return int(world) if world.isdigit() else 1


def current(cpu: bool = False) -> Group:
    """This process's group, joined on first use (one process: a group of one); `cpu`: --device cpu."""
    global _group
    if _group is None:
        _group = _join(cpu) if launched_world() > 1 else Group()
    return _group


def joined() -> Group | None:
    """The group if this process has joined one, without joining (for the error path)."""
    return _group


def launch_settings() -> tuple[int, int, float]:
    """RANK, WORLD_SIZE and the timeout, checked before connecting to anything."""
    try:
        timeout = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT))
    except ValueError:
        raise UsageError(f"{TIMEOUT_ENV}={os.environ[TIMEOUT_ENV]!r} is not a number of seconds; set it to e.g. 1800.") from None
    world, rank = launched_world(), os.environ.get("RANK", "")
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise LaunchError(f"WORLD_SIZE is {world} but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not "
                          f"set; {LAUNCH_HELP}.")
    if not rank.isdigit() or int(rank) >= world:
        raise LaunchError(f"RANK={rank} is not a rank of WORLD_SIZE={world} (0 to {world - 1}); {LAUNCH_HELP}.")
    return int(rank), world, timeout


def _join(cpu: bool) -> Group:
    import torch
    import torch.distributed as dist

    rank, world, timeout = launch_settings()
    cpu = cpu or not torch.cuda.is_available()
    wait = timedelta(seconds=timeout)
    address = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    try:  # the launcher's rendezvous: its store is the failure channel; meetings run on a gloo group of their own
        store, rank, world = next(dist.rendezvous("env://", timeout=wait))
        if not dist.is_initialized():
            backend = "gloo" if cpu else "cpu:gloo,cuda:nccl"  # NCCL for distill's gradients on GPUs
            dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=wait)
        meetings = dist.group.WORLD if dist.get_backend() == "gloo" else dist.new_group(backend="gloo", timeout=wait)
        from accelerate import PartialState

        PartialState(cpu=cpu)  # accelerate adopts the group (distill's Accelerator too)
    except (RuntimeError, ValueError) as error:  # DistStoreError and DistNetworkError are RuntimeErrors
        others = "rank 0 at" if rank else f"the other {world - 1} rank{'s' if world > 2 else ''} at"
        raise LaunchError(f"this rank could not meet {others} {address} within {timeout:.0f} s "
                          f"({type(error).__name__}); start every rank of the job: {LAUNCH_HELP}.") from None
    return Group(rank=rank, world=world, local_rank=int(os.environ.get("LOCAL_RANK", 0)),
                 store=dist.PrefixStore("dicecli", store), meetings=meetings, timeout=timeout)


def report_failure(sentence: str, launch_error: bool = False) -> tuple[str, bool]:
    """This rank's failure as a line, and whether this rank says it. Before the job is joined, it comes from the command
    line or environment, which all ranks share: rank 0 says it (`launch_error`: every rank does)."""
    group, world = joined(), launched_world()
    if world <= 1:
        return sentence, True
    if group is None:
        rank = os.environ.get("RANK", "0")
        return f"rank {rank} of {world}: {sentence}", rank == "0" or launch_error
    line = f"rank {group.rank} of {group.world} on {socket.gethostname()}: {sentence}"
    try:
        return line, group.fail(line)
    except Exception:  # noqa: BLE001 - the store is gone (its host exited): say it here rather than nothing
        return line, True


def failure_time() -> float:
    """When the job's first failure was recorded (now, if the store is gone)."""
    with contextlib.suppress(Exception):
        return float(joined().store.get("failed_at").decode())
    return time.time()
