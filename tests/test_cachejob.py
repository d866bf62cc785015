"""Caches written by several processes are joined only when their parts are complete (docs/distributed.md): a part
lost between the ranks' end and the join is refused in one sentence naming the missing batches, nothing replaced,
and running again makes only what is missing and gives what one process gives. The ranks are stood in for by one
process that plays the main rank of two (the launcher suite runs the real thing)."""

import h5py
import numpy as np
import pytest

from dicecli import distributed
from dicecli.cache import CacheWriter
from dicecli.cachejob import CacheJob, CacheParts, run_cache_job
from dicecli.errors import DamagedError

ROWS, BATCH = 10, 2
HEADER = {"format": "dice-embeddings", "dtype": "float32", "model": "m"}


class MainOfTwo:
    """The main process of a job of two that makes every batch itself; `at_end` runs where the ranks meet at the end."""

    main, several, rank, world, local_rank = True, True, 0, 2, 0

    def __init__(self, at_end=None):
        self.at_end = at_end

    def meet(self, point, payload=None):
        if point.startswith("the end of writing") and self.at_end:
            self.at_end()
        return [payload, payload]

    def deal(self, units):
        return list(units)

    def check_shared(self, *args):
        pass

    def check(self):
        pass

    def progress(self, done):
        return done


def job() -> CacheJob:
    def fill(writer: CacheWriter, start: int, stop: int):
        for first in range(start, stop, BATCH):
            rows = range(first, min(first + BATCH, stop))
            writer.append_strings("prompts", [f"prompt {i}" for i in rows])
            writer.append_array("values", np.arange(len(rows) * 3, dtype=np.float32).reshape(-1, 3) + first)
            yield len(rows)

    return CacheJob(dict(HEADER), fill, ROWS, BATCH, plan={"rows": ROWS})


def contents(path):
    with h5py.File(path) as f:
        return [p.decode() for p in f["prompts"][:]], f["values"][:]


def test_a_lost_part_is_refused_and_a_rerun_completes_as_one_process(tmp_path, monkeypatch):
    one = tmp_path / "one.h5"
    run_cache_job(one, job())  # a group of one: written directly
    out = tmp_path / "out.h5"
    out.write_bytes(b"an earlier result")
    parts = CacheParts(out, {"rows": ROWS}, MainOfTwo())

    def lose_a_part():
        parts.part(0, 5).unlink()  # the first run of batches (0-4) vanishes, as on a node's local disk

    monkeypatch.setattr(distributed, "current", lambda cpu=False: MainOfTwo(at_end=lose_a_part))
    with pytest.raises(DamagedError) as refused:
        run_cache_job(out, job())
    sentence = str(refused.value)
    assert "lack batches 0, 1, 2, 3, 4" in sentence and "run the command again" in sentence and "\n" not in sentence
    assert out.read_bytes() == b"an earlier result"  # nothing replaced
    made = []
    monkeypatch.setattr(distributed, "current", lambda cpu=False: MainOfTwo())
    original = CacheParts.runs
    monkeypatch.setattr(CacheParts, "runs", lambda self, batches: made.extend(batches) or original(self, batches))
    run_cache_job(out, job())
    assert made == [0, 1, 2, 3, 4]  # only the lost batches were made again
    prompts, values = contents(out)
    assert prompts == contents(one)[0] and np.array_equal(values, contents(one)[1])
    assert not parts.folder.exists()


def test_a_part_with_rows_missing_is_refused_and_removed(tmp_path, monkeypatch):
    out = tmp_path / "out.h5"
    parts = CacheParts(out, {"rows": ROWS}, MainOfTwo())

    def shorten():
        path = parts.part(0, 5)
        with h5py.File(path, "a") as f:
            f["values"].resize(3, axis=0)

    monkeypatch.setattr(distributed, "current", lambda cpu=False: MainOfTwo(at_end=shorten))
    with pytest.raises(DamagedError, match="is inconsistent .values has not the 10 rows of its batches.; it was removed"):
        run_cache_job(out, job())
    assert not out.exists() and not parts.part(0, 5).exists()


def test_a_killed_jobs_parts_are_reused_and_removed_by_one_process(tmp_path, monkeypatch):
    """docs/distributed.md: parts are reused whatever the process count, then removed (they were left beside
    the cache when the rerun had one process)."""
    one = tmp_path / "one.h5"
    run_cache_job(one, job())
    out = tmp_path / "out.h5"

    def killed():
        raise KeyboardInterrupt  # the job stops after its parts were written, before the join

    monkeypatch.setattr(distributed, "current", lambda cpu=False: MainOfTwo(at_end=killed))
    with pytest.raises(KeyboardInterrupt):
        run_cache_job(out, job())
    parts = CacheParts(out, {"rows": ROWS}, MainOfTwo())
    assert len(parts.files()) == 1 and not out.exists()
    monkeypatch.setattr(distributed, "current", lambda cpu=False: distributed.Group())  # one process
    made = []
    original = CacheParts.runs
    monkeypatch.setattr(CacheParts, "runs", lambda self, batches: made.extend(batches) or original(self, batches))
    run_cache_job(out, job())
    assert made == [] and not parts.folder.exists()  # nothing made again, no staging folder left
    assert contents(out)[0] == contents(one)[0] and np.array_equal(contents(out)[1], contents(one)[1])


def test_a_lost_metadata_part_is_refused_and_a_rerun_completes_the_sample_folder(dice, prompts_file, tmp_path,
                                                                                 monkeypatch):
    """The sample folder's per-rank metadata is joined by the same rule: every image held by one part."""
    from dicecli.samplefolder import METADATA_PART

    common = [prompts_file, "--model", "tiny-sd15", "--steps", "1", "--batch-size", "1", "-q"]
    assert dice("sample", *common, "-o", tmp_path / "one").code == 0
    folder = tmp_path / "two"

    def lose_the_part():
        (folder / METADATA_PART.format(0)).unlink()

    class Sampling(MainOfTwo):
        def meet(self, point, payload=None):
            if point.startswith("the end of sampling") and self.at_end:
                self.at_end()
            return [payload, 0 if isinstance(payload, int) else payload]

    monkeypatch.setattr(distributed, "current", lambda cpu=False: Sampling(at_end=lose_the_part))
    refused = dice("sample", *common, "-o", folder)
    assert refused.code != 0 and "The metadata parts of" in refused.stderr and "lack images 0, 1, 2" in refused.stderr
    assert not (folder / "metadata.jsonl").exists()  # nothing joined
    monkeypatch.setattr(distributed, "current", lambda cpu=False: Sampling())
    again = dice("sample", *common, "-o", folder, "--debug")
    assert again.code == 0, again.stderr
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in folder.iterdir())
    assert all((tmp_path / "one" / n).read_bytes() == (folder / n).read_bytes() for n in names)
