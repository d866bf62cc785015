"""Work written in parts by several processes and joined by the main one: a cache's part files, a sample folder's
per-rank metadata (docs/distributed.md, "Failures, locks and reruns"). Before any join, the parts must cover the
work exactly: every unit held once. A part lost between the ranks' end and the join (a node's local disk, a
cleaner) is refused in one sentence naming what is missing, before anything is joined or replaced."""

from __future__ import annotations

from collections import Counter
from typing import Iterable

from dicecli.errors import DamagedError


def check_coverage(held: Iterable[int], expected: Iterable[int], what: str, units: str) -> None:
    """`held`: the units the parts hold (with repeats); `expected`: every unit the join needs. `what` names the
    parts (`The parts of out.h5 in .out.h5.parts`), `units` what they hold (`batches`, `images`)."""
    counts = Counter(held)
    missing = [k for k in expected if not counts[k]]
    twice = sorted(k for k, n in counts.items() if n > 1)
    if missing or twice:
        wrong = missing or twice
        listed = ", ".join(map(str, wrong[:8])) + (", ..." if len(wrong) > 8 else "")
        problem = f"lack {units} {listed}" if missing else f"hold {units} {listed} twice"
        raise DamagedError(f"{what} {problem} (a part was lost or left by another run); nothing was joined: run the "
                           "command again, which makes only what is missing.")
