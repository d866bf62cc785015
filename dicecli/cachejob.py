"""Writing a cache under one or several processes: part files per run of batches, joined by the main process
(docs/distributed.md). The format itself is `dicecli.cache`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

from dicecli.cache import CacheWriter, attr_value


PART_BATCHES = 16


class CacheParts:
    """A cache written by several processes: each writes its runs of batches as part files in a staging folder
    beside the output, and the main process joins them in order into the output (docs/distributed.md).

    Parts are named by the batches they hold (`batches-K0-K1.h5`, batch k being rows k*B..(k+1)*B-1 of the
    rows to write), so a rerun after a killed rank writes only the batches no part holds, whatever the
    process count. `plan` identifies what is written (rows, batch size, model, settings): the staging folder
    of another plan is discarded.
    """

    def __init__(self, output: Path, plan: dict, group):
        from dicecli.files import content_key

        self.output, self.group = Path(output), group
        self.folder = self.output.parent / f".{self.output.name}.parts"
        self.key = content_key(plan)

    def open(self, batches: int) -> list[int]:
        """Prepare the staging folder (main process) and return the batches no part holds yet, for every rank."""
        import json
        import shutil

        missing = None
        if self.group.main:
            plan_file = self.folder / "plan"
            if self.folder.exists() and (not plan_file.is_file() or plan_file.read_text() != self.key):
                shutil.rmtree(self.folder)
            self.folder.mkdir(exist_ok=True)
            plan_file.write_text(self.key)
            held = set()
            for part in self.files():
                k0, k1 = _part_range(part)
                held.update(range(k0, k1))
            missing = [k for k in range(batches) if k not in held]
        missing = self.group.meet(f"the staging folder {self.folder}", missing)[0]
        from dicecli.files import check_shared

        check_shared(self.group, self.folder, f"beside -o {self.output}")
        return json.loads(json.dumps(missing))

    def runs(self, batches: list[int]) -> list[tuple[int, int]]:
        """Consecutive batches as [k0, k1) runs of at most PART_BATCHES: one part file each (a killed process
        loses at most one part's work)."""
        runs: list[list[int]] = []
        for k in batches:
            if runs and runs[-1][1] == k and k - runs[-1][0] < PART_BATCHES:
                runs[-1][1] = k + 1
            else:
                runs.append([k, k + 1])
        return [(a, b) for a, b in runs]

    def part(self, k0: int, k1: int) -> Path:
        return self.folder / f"batches-{k0:07d}-{k1:07d}.h5"

    def files(self) -> list[Path]:
        """Complete parts, in batch order (an unfinished part is still a temporary file)."""
        return sorted(self.folder.glob("batches-*.h5"), key=_part_range)

    def check_complete(self, batches: int, batch_size: int, rows: int, header: dict) -> None:
        """Before any join: every batch 0..batches-1 held by exactly one part, each part holding its batches' rows in
        every dataset and the header's attributes. Else one sentence naming what is wrong, nothing joined or replaced;
        a part that is wrong is removed, so that running the command again remakes just what is missing."""
        from collections import Counter

        from dicecli.errors import DamagedError
        from dicecli.parts import check_coverage

        held: Counter = Counter()
        for part in self.files():
            k0, k1 = _part_range(part)
            held.update(range(k0, k1))
            want = min(k1 * batch_size, rows) - k0 * batch_size
            with h5py.File(part, "r") as f:
                short = [n for n in f if not n.startswith("negative_") and f[n].shape[0] != want]
                other = [k for k, v in header.items() if k != "created" and attr_value(f.attrs.get(k)) != v]
            if short or other:
                part.unlink()
                what = f"{short[0]} has not the {want} rows of its batches" if short else f"its {other[0]} is another"
                raise DamagedError(f"Part {part.name} of {self.output} is inconsistent ({what}); it was removed: run the "
                                   "command again to remake it.")
        check_coverage(held.elements(), range(batches), f"The parts of {self.output} in {self.folder}", "batches")

    def join_into(self, writer: "CacheWriter", rows_per_copy: int = 1024) -> None:
        """Append every part's rows, in order, to `writer` (the main process, after every rank is done)."""
        for part in self.files():
            with h5py.File(part, "r") as source:
                for name in (n for n in source if not n.startswith("negative_")):
                    _append_dataset(writer.file, name, source[name], rows_per_copy)

    def remove(self) -> None:
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)


def _append_dataset(file: h5py.File, name: str, source: h5py.Dataset, rows_per_copy: int) -> None:
    """Append `source`'s rows to `file[name]`: chunk by chunk, still compressed, where the chunks line up (the
    parts of one cache do: whole batches), so joining costs no recompression; else decoded block by block."""
    if name not in file:
        file.create_dataset(name, shape=(0,) + source.shape[1:], maxshape=(None,) + source.shape[1:], chunks=source.chunks,
                            dtype=source.dtype, compression=source.compression, compression_opts=source.compression_opts,
                            shuffle=source.shuffle)
    target, count = file[name], source.shape[0]
    start = target.shape[0]
    rows = source.chunks[0]
    target.resize(start + count, axis=0)
    aligned = (source.dtype.kind != "O" and target.chunks == source.chunks and start % rows == 0
               and (target.compression, target.compression_opts, target.shuffle) ==
               (source.compression, source.compression_opts, source.shuffle) and target.dtype == source.dtype)
    if aligned:
        tail = (0,) * (len(source.shape) - 1)
        for first in range(0, count, rows):
            mask, chunk = source.id.read_direct_chunk((first, *tail))
            target.id.write_direct_chunk((start + first, *tail), chunk, mask)
        return
    for first in range(0, count, rows_per_copy):
        block = source[first : first + rows_per_copy] if source.dtype.kind != "O" else \
            np.array(source.asstr()[first : first + rows_per_copy], dtype=object)
        target[start + first : start + first + len(block)] = block


def _part_range(path: Path) -> tuple[int, int]:
    _, k0, k1 = path.stem.split("-")
    return int(k0), int(k1)


@dataclass
class CacheJob:
    """A cache to write: its `header` (a new file's attributes), or a copy of `existing` to append to; `rows` rows in
    batches of `batch_size`, written by `fill(writer, start, stop)` (start a multiple of `batch_size`, so every
    process computes exactly the batches one process would), which yields the number of rows after each batch;
    then `finish(writer)` (e.g. the negative prompt's rows). `plan` identifies the work, for parts left by a killed
    run; `payload()` is what each process reports back; `random_access` lays rows out one per chunk."""

    header: dict
    fill: Callable
    rows: int
    batch_size: int
    plan: dict
    existing: Path | None = None
    finish: Callable | None = None
    payload: Callable = lambda: None
    desc: str = "write"
    random_access: bool = False


def run_cache_job(output: Path, job: CacheJob, progress: bool = False) -> list:
    """Write a cache atomically (docs/formats.md): one process writes it directly; under several processes each
    writes its share of the batches into `CacheParts` and the main process joins them. Returns each process's
    `job.payload()`, in rank order."""
    import shutil

    from tqdm.auto import tqdm

    from dicecli import distributed
    from dicecli.files import atomic_path

    group = distributed.current()
    header, fill, rows, batch_size, existing, finish = job.header, job.fill, job.rows, job.batch_size, job.existing, job.finish
    random_access, desc, payload = job.random_access, job.desc, job.payload
    batches = -(-rows // batch_size)

    def begin(tmp: Path) -> CacheWriter:
        if existing is not None:
            shutil.copyfile(existing, tmp)
        return CacheWriter(tmp, None if existing is not None else header, random_access)

    with tqdm(total=rows, unit="row", desc=desc, disable=not (progress and group.main), leave=False) as bar:
        def run(writer: CacheWriter, k0: int, k1: int) -> None:
            for count in fill(writer, k0 * batch_size, min(k1 * batch_size, rows)):
                bar.n = group.progress(count)
                bar.refresh()
                group.check()

        parts = CacheParts(output, job.plan, group)
        if not group.several and not parts.folder.exists():  # else a killed job's parts, reused whatever the count
            with atomic_path(output) as tmp, begin(tmp) as writer:
                run(writer, 0, batches)
                if finish:
                    finish(writer)
            return [payload()]
        missing = parts.open(batches)
        group.progress(rows - sum(min((k + 1) * batch_size, rows) - k * batch_size for k in missing) if group.main else 0)
        for k0, k1 in parts.runs(group.deal(missing)):
            with atomic_path(parts.part(k0, k1)) as tmp, CacheWriter(tmp, header, random_access) as writer:
                run(writer, k0, k1)
        payloads = group.meet(f"the end of writing {output}", payload())
    if group.main:
        parts.check_complete(batches, batch_size, rows, header)
        with atomic_path(output) as tmp, begin(tmp) as writer:
            parts.join_into(writer)
            if finish:
                finish(writer)
        parts.remove()
    return payloads
