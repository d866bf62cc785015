"""Atomic file output: write beside the target, then rename, so a killed run leaves no half file."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from dicecli import faults
from dicecli.errors import UsageError

STDIO = "-"


def check_output(path: Path, inputs: list[Path] = (), option: str = "-o", folder: bool = False) -> None:
    """The one rule for every output (docs/reliability.md, "Outputs never destroy"), applied before any work.

    Refused: an output that is, or resolves to (through links), one of the command's inputs; one that is an
    existing file inside an input folder (a model's or a data folder's own files); a folder output (`folder`)
    that holds one of the inputs; and an output that exists and is not a regular file or folder (a device such
    as /dev/null, a FIFO, a socket), which the atomic rename would replace."""
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():  # a file where a folder is meant: said by the command
        raise UsageError(f"Output {path} ({option}) is {_file_kind(path)}, not a regular "
                         f"{'folder' if folder else 'file'}; dice never replaces one: give a path to a "
                         f"{'folder' if folder else 'file (or - to write to standard output)'}.")
    target = path.resolve()
    for given in inputs:
        source = Path(given).resolve()
        if (target == source or source.is_dir() and source in target.parents and path.exists()
                or folder and target in source.parents):
            raise UsageError(f"Output {path} ({option}) would replace or write into the input {given}; choose an output "
                             "outside the command's inputs.")


def _file_kind(path: Path) -> str:
    mode = path.stat().st_mode
    for test, kind in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return kind
    return "a file"


def check_writable(path: Path, option: str = "-o") -> None:
    """Fail early, before any expensive work, when `path` cannot be written. Missing folders above it are fine:
    every command's output creates them (the one `-o` rule, as `mkdir -p`), when it writes."""
    check_output(path, option=option)
    if path.is_dir() or path.name in ("", ".", ".."):
        raise UsageError(f"Output {path} ({option}) is a folder; give a file name, e.g. {path / 'out.h5'}.")
    folder = existing_folder_above(path)
    if not folder.is_dir():
        raise UsageError(f"Output {path} ({option}) lies under {folder}, which is a file, not a folder; choose another path.")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"Output folder {folder} ({option}) is not writable; choose another path with {option}.")


def existing_folder_above(path: Path) -> Path:
    """The nearest of `path`'s parents that exists (`.` at worst)."""
    folder = Path(path).parent
    while str(folder) not in ("", ".") and not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder if str(folder) else Path(".")


@contextlib.contextmanager
def atomic_path(path: Path, clean: bool = True) -> Iterator[Path]:
    """Yield a temporary path in `path`'s folder; rename it onto `path` only if the block succeeds.

    `clean` first removes temporaries of `path` left by killed runs (callers writing many files into
    one folder clean the folder once instead)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # the -o rule: missing folders are made (check_writable)
    if clean:
        remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent or ".")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~current_umask())  # mkstemp makes 0600; files get the user's usual mode
        faults.point(f"write:{path.name}")
        if path.exists() and not path.is_file():  # never rename over a device, FIFO or socket (check_output)
            raise UsageError(f"Output {path} is {_file_kind(path)}, not a regular file; dice never replaces one.")
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def sha256_of(path: Path) -> str:
    """A file's sha256, remembered by (path, size, modification time) under dicecli's home, so that a
    checkpoint of several GB is read once (as A1111 does for its model hashes)."""
    import hashlib
    import json

    from dicecli.paths import dice_home

    path = Path(path).resolve()
    stat_ = path.stat()
    key = f"{path}|{stat_.st_size}|{stat_.st_mtime_ns}"
    cache = dice_home() / "sha256.json"
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if key not in known:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        known[key] = digest.hexdigest()
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(cache) as tmp:
                tmp.write_text(json.dumps(known))
        except OSError:
            pass  # a read-only home only costs hashing again next time
    return known[key]


def content_key(value) -> str:
    """A short key for JSON-able data (e.g. the plan of a job written in parts): equal data, equal key."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def exclusive_lock(target: Path, what: str, wait: bool) -> Iterator[None]:
    """An OS lock (flock) held while the block runs: on the folder itself when `target` is a folder,
    else on a small `.NAME.lock` file beside it (a file that is replaced by renames cannot be its own lock).

    The lock dies with the process, so a killed run never leaves a lock to clean up (the `.lock`
    file holds nothing and is reused). `wait=False` refuses at once with one sentence naming
    the lock; `wait=True` says once that it waits, then waits.
    """
    import fcntl

    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)  # the -o rule (check_writable)
    lock_path = target if target.is_dir() else target.parent / f".{target.name}.lock"
    fd = os.open(lock_path, os.O_RDONLY if target.is_dir() else os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise UsageError(
                    f"{what} {target} is in use by another dice process (lock on {lock_path}); wait for it to finish "
                    "or choose another output."
                ) from None
            print(f"waiting: {what} {target} is in use by another dice process (lock on {lock_path}).", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def main_lock(target: Path, what: str, wait: bool):
    """`exclusive_lock`, held by the main process of a job for all of its processes (docs/distributed.md): the
    others wait for it at their first meeting point, and a job that cannot have it fails as a whole."""
    from dicecli import distributed

    group = distributed.current()
    lock = exclusive_lock(target, what, wait) if group.main else contextlib.nullcontext()
    if not group.several:
        return lock
    return _locked_then_met(lock, group, f"the lock on {target}")


@contextlib.contextmanager
def _locked_then_met(lock, group, point: str) -> Iterator[None]:
    with lock:
        group.meet(point)
        yield


PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl")


def read_safetensors(path: Path, option: str, kind: str) -> dict:
    """The tensors of a safetensors file a user names (`--lora`, `--embedding`), or one sentence: missing, a pickle
    (never loaded: unpickling can run code), or unreadable."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise UsageError(f"{option} {path} does not exist; give a {kind} .safetensors file.")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise UsageError(f"{option} {path} is a pickle ({path.suffix}), which dicecli never loads (it can run code); "
                         "use its .safetensors version, or convert it once in a trusted environment.")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise UsageError(f"{option} {path} is not a readable .safetensors file ({error}).") from None


def check_stdout_takes_binary(what: str) -> None:
    """`-o -` for a binary file: refused, before any work, when standard output is a terminal (as tools refuse to
    print binary to one); a pipe or a file is what it is for."""
    if sys.stdout is not None and sys.stdout.isatty():
        raise UsageError(f"-o - writes {what} to standard output, which is a terminal here; pipe it into a command "
                         "(e.g. | dice sample - -o out/) or give -o a file.")


def write_to_stdout(write: Callable[[Path], None], name: str = "out.h5") -> None:
    """`-o -`: `write(path)` makes the file in a temporary folder (HDF5 needs a seekable file), which is then copied
    to standard output and removed."""
    with tempfile.TemporaryDirectory(prefix="dice-stdout-") as folder:
        path = Path(folder) / name
        write(path)
        with open(path, "rb") as source:
            shutil.copyfileobj(source, sys.stdout.buffer)
        sys.stdout.buffer.flush()


def stdin_to_file(folder: Path | None = None) -> Path:
    """Spool standard input to a temporary file (HDF5 needs a seekable file)."""
    fd, tmp = tempfile.mkstemp(prefix="dice-stdin-", suffix=".bin", dir=folder)
    with os.fdopen(fd, "wb") as sink:
        shutil.copyfileobj(sys.stdin.buffer, sink)
    return Path(tmp)


def remove_stale_temporaries(path: Path, pattern: str | None = None) -> None:
    """Delete temporary files of `path` (or of every file in folder `path` when pattern="*")
    left by runs that were killed: their process id is gone."""
    folder, name = (path, pattern) if pattern else (path.parent, re.escape(path.name))
    owner = re.compile(rf"^\.{name if pattern is None else '.+'}\.(\d+)\.[^.]+\.tmp$")
    for candidate in folder.glob(f".{path.name if pattern is None else '*'}.*.tmp"):
        match = owner.match(candidate.name)
        if match and not _pid_alive(int(match.group(1))):
            candidate.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_shared(group, path: Path, made_by: str) -> None:
    """After a meeting of a job's processes: `path`, which the main process made, must be visible here (several
    nodes need a filesystem they all share for the one output)."""
    if group.several and not group.main and not Path(path).exists():
        raise UsageError(f"This process cannot see {path}, which the main process created {made_by}; with several "
                         "nodes the output must be on a filesystem they all share.")


def refuse_stdio(what: str) -> None:
    """Standard input and output belong to one process: several ranks cannot share them."""
    from dicecli.distributed import launched_world

    if launched_world() > 1:
        raise UsageError(f"{what} cannot be standard input or output when dice runs as several processes; give a file.")
