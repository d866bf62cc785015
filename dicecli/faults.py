"""Fault injection for the reliability tests: stop this process at a named point, deterministically.

Inert unless `DICE_FAULT` is set, which only tests do (`tests/reliability/test_kill_points.py`):

    DICE_FAULT="PATTERN[@N][:SIGNAL]"

sends SIGNAL (`KILL`, the default, or `INT`, as Ctrl-C does) to this process the N-th time
(default: the first) execution reaches a point whose name matches PATTERN (a shell pattern);
`STOP` pauses it there until it gets SIGCONT (to hold a run mid-write while another starts), and
`ENOSPC` instead raises the OSError a full disk gives.
Points: `start` (the command line is parsed), `write:FILE` (a new version of FILE is complete
beside the old one, just before the rename that replaces it) and `STAGE.batch` / `distill.step`
(after each unit of work: an encoded or enhanced batch, a sampled batch, an optimizer update).
With `DICE_FAULT_RANK=R`, only rank R of a job of several processes stops (tests/distributed).
"""

from __future__ import annotations

import errno
import fnmatch
import os
import signal

ENV = "DICE_FAULT"
_reached: dict[str, int] = {}


def point(name: str) -> None:
    spec = os.environ.get(ENV)
    if not spec or os.environ.get("DICE_FAULT_RANK", os.environ.get("RANK")) != os.environ.get("RANK"):
        return
    pattern, _, signal_name = spec.rpartition(":")
    if signal_name not in ("KILL", "INT", "STOP", "ENOSPC"):  # none given (point names contain colons themselves)
        pattern, signal_name = spec, "KILL"
    pattern, _, nth = pattern.partition("@")
    if fnmatch.fnmatchcase(name, pattern):
        _reached[pattern] = _reached.get(pattern, 0) + 1
        if _reached[pattern] == int(nth or 1):
            if signal_name == "ENOSPC":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            os.kill(os.getpid(), getattr(signal, f"SIG{signal_name}"))
