"""Run a manifest's cases: resume, the thread plan, Ctrl-C, in-process / process pool / Dask.

:func:`run_batch` reads the manifest, names the outputs, decides per case (from the earlier
summary and the case's fingerprint) whether it is skipped, fails at once (a bad row) or runs,
runs the rest, and rewrites ``OUTDIR/summary.csv`` after every case. One failing case never
stops the others. The first Ctrl-C stops after the cases in progress (the rest are ``not run``);
a second one stops at once (the case in progress writes nothing).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LiteMedSAMError, SegmentationCancelled
from .manifest import Case, assign_outputs, fingerprint, read_manifest
from .summary import SUMMARY_NAME, SummaryRow, read_summary, write_summary
from .worker import CaseResult, init_pool_worker, run_case, run_case_on_dask

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchOptions:
    """The pipeline options of every case (the ``segment`` command's), picklable for workers.

    ``model`` and ``preset`` apply to rows that do not name their own; ``segment_options``
    are passed on to :func:`~LiteMedSAMLib.segmentation.segment_image` as they are.
    """

    model: str | None = None
    weights: str | None = None
    mode: str | None = None
    preset: str = "auto"
    window: tuple[float, float] | None = None
    threads: int | None = None
    segment_options: dict = field(default_factory=dict)

    def fingerprint_part(self) -> dict:
        """The options that change a result (not ``threads``)."""
        weights = None
        if self.weights:
            path = Path(self.weights)
            stat = path.stat() if path.is_file() else None
            weights = [str(path.resolve()), stat.st_size, stat.st_mtime_ns] if stat else str(path)
        return {"model": self.model, "weights": weights, "mode": self.mode, "preset": self.preset,
                "window": list(self.window) if self.window else None,
                "segment_options": {k: repr(v) for k, v in sorted(self.segment_options.items())}}


@dataclass
class BatchReport:
    """The outcome: the summary rows (manifest order), what was chosen, whether Ctrl-C stopped it."""

    rows: list[SummaryRow]
    summary_path: Path
    plan: str
    seconds: float
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)
    loads: dict[int, int] = field(default_factory=dict)  # worker pid -> models it loaded (1 is the point)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.rows)

    @property
    def exit_status(self) -> int:
        """0: every case done or skipped; 1: a case failed; 130: stopped by Ctrl-C."""
        if self.interrupted:
            return 130
        return 1 if self.count("failed") else 0


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def plan_threads(workers: int, threads: int | None, cases: int, cores: int | None = None) -> tuple[int, int, str]:
    """``(workers, threads per worker, a sentence saying so)`` with workers x threads <= cores.

    More workers than cores or than cases are not started; asked-for threads are lowered to
    fit; without ``threads`` each worker gets ``cores // workers``.
    """
    cores = cores or available_cores()
    if workers < 1:
        raise LiteMedSAMError(f"--workers must be at least 1, got {workers}")
    if threads is not None and threads < 1:
        raise LiteMedSAMError(f"--threads must be at least 1, got {threads}")
    notes = []
    used = min(workers, cores, max(1, cases))
    if used < workers:
        notes.append(f"{workers} workers asked, {used} started "
                     f"({'cores' if workers > cores and used == cores else 'cases to run'}: "
                     f"{cores if used == cores else cases})")
    per = cores // used
    if threads is not None and threads > per:
        notes.append(f"--threads {threads} lowered to {per}")
    per = min(threads, per) if threads is not None else per
    sentence = (f"{used} worker{'s' if used > 1 else ''} x {per} thread{'s' if per > 1 else ''} "
                f"on {cores} core{'s' if cores > 1 else ''}")
    return used, per, sentence + (f" ({'; '.join(notes)})" if notes else "")


def run_batch(manifest: str | Path, outdir: str | Path, options: BatchOptions = BatchOptions(), *,
              workers: int = 1, scheduler=None, force: bool = False,
              on_plan: Callable[[str], None] | None = None,
              on_case: Callable[[int, int, SummaryRow], None] | None = None,
              slice_progress: Callable[[int, int], None] | None = None) -> BatchReport:
    """Segment every case of ``manifest`` into ``outdir`` and write ``outdir/summary.csv``.

    Args:
        workers: processes on this machine (1: in this process).
        scheduler: a Dask scheduler address (or a ``distributed.Client``) to run the cases on
            instead; workers must see the same paths (a shared file system).
        force: redo cases that would be skipped, and replace outputs this batch did not write.
        on_plan: called once with the workers/threads sentence; ``on_case(done, total, row)``
            after each case to run; ``slice_progress(done, total)`` per slice (in-process only).
    Raises:
        LiteMedSAMError: the manifest itself is unusable (no ``image`` column, no usable row),
            or the output folder cannot be made.
    """
    from ..imageio import remove_stale_temporaries

    start = time.perf_counter()
    cases = read_manifest(manifest)
    outdir = Path(outdir)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LiteMedSAMError(f"cannot create the output folder {outdir}: {exc}") from None
    for stale in remove_stale_temporaries(outdir):
        log.info("removed %s, left by a killed run", stale)
    notes = assign_outputs(cases, outdir)
    summary_path = outdir / SUMMARY_NAME
    previous = read_summary(summary_path)
    rows, todo = _plan_cases(cases, options, previous, force)
    write_summary(summary_path, rows)

    if scheduler is not None:
        runner = _DaskRunner(scheduler, options)
        plan = runner.describe()
    else:
        used, threads, plan = plan_threads(workers, options.threads, len(todo))
        runner = _InProcessRunner(options, threads, slice_progress) if used == 1 else \
            _PoolRunner(options, used, threads)
    if on_plan is not None:
        on_plan(plan)
    loads: dict[int, int] = {}
    interrupted = _run_all(runner, todo, rows, summary_path, on_case, loads)
    return BatchReport(rows, summary_path, plan, time.perf_counter() - start, interrupted, notes, loads)


def _plan_cases(cases: list[Case], options: BatchOptions, previous: dict[str, SummaryRow], force: bool):
    """Summary rows for all cases, and ``(index, case)`` of those to run."""
    rows, todo = [], []
    option_part = options.fingerprint_part()
    for index, case in enumerate(cases):
        row = SummaryRow(output=case.output.name, image=str(case.image), rows=case.where.split(" ", 1)[1],
                         fingerprint=fingerprint(case, option_part))
        rows.append(row)
        before = previous.get(row.output)
        if case.errors:
            row.status, row.error = "failed", "; ".join(case.errors)
        elif (not force and case.output.exists() and before is not None
              and before.status in ("done", "skipped") and before.fingerprint == row.fingerprint):
            row.status = "skipped"
            row.seconds, row.segments, row.voxels = before.seconds, before.segments, before.voxels
        elif not force and case.output.exists() and before is None:
            row.status = "failed"
            row.error = (f"{case.where}: {case.output} exists and was not written by this batch "
                         "(it is not in summary.csv); pass --force to replace it")
        else:
            todo.append((index, case))
    return rows, todo


def _record(row: SummaryRow, result: CaseResult) -> None:
    row.status, row.seconds, row.error = result.status, f"{result.seconds:.1f}", result.error
    row.segments = ";".join(result.segments) if result.status == "done" else ""
    row.voxels = ";".join(map(str, result.voxels)) if result.status == "done" else ""


class _StopFlag:
    """Ctrl-C while the batch runs: the first press sets the flag (stop after the cases in
    progress), the second raises ``KeyboardInterrupt`` (stop now)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.previous = None

    def __enter__(self) -> "_StopFlag":
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()
        log.warning("Ctrl-C: stopping after the case(s) in progress (press again to stop now)")

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def _run_all(runner, todo, rows, summary_path, on_case, loads: dict[int, int]) -> bool:
    """Run ``todo`` through ``runner``, recording each result; True when Ctrl-C stopped it."""
    done = 0

    def finished(index: int, result: CaseResult) -> None:
        nonlocal done
        done += 1
        _record(rows[index], result)
        if result.pid:
            loads[result.pid] = max(loads.get(result.pid, 0), result.predictors_built)
        write_summary(summary_path, rows)
        if on_case is not None:
            on_case(done, len(todo), rows[index])

    def started(index: int) -> None:
        rows[index].status = "running"
        write_summary(summary_path, rows)

    with _StopFlag() as stop:
        try:
            runner.run(todo, started, finished, stop.event)
        except (KeyboardInterrupt, SegmentationCancelled):
            runner.abort()
            for row in rows:
                if row.status == "running":
                    row.status, row.error = "not run", "stopped by Ctrl-C during this case; nothing was written"
            stop.event.set()
        finally:
            for row in rows:
                if row.status == "running":  # never started by the runner after a stop
                    row.status = "not run"
            write_summary(summary_path, rows)
        return stop.event.is_set() and any(row.status == "not run" for row in rows)


class _InProcessRunner:
    """One case after the other in this process; slice progress within a case."""

    def __init__(self, options: BatchOptions, threads: int, slice_progress) -> None:
        from dataclasses import replace

        self.options = replace(options, threads=threads)
        self.slice_progress = slice_progress

    def run(self, todo, started, finished, stop: threading.Event) -> None:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(self.options.threads)  # for the eager parts; restored after
        try:
            for index, case in todo:
                if stop.is_set():
                    return
                started(index)
                finished(index, run_case(case, self.options, progress=self.slice_progress))
        finally:
            torch.set_num_threads(before)

    def abort(self) -> None:
        pass


class _BoundedRunner:
    """Keeps at most ``limit`` cases in flight (so that Ctrl-C stops after them) and records
    each as it completes; subclasses submit and wait."""

    limit = 1

    def run(self, todo, started, finished, stop: threading.Event) -> None:
        queue = list(todo)
        in_flight: dict = {}
        while queue or in_flight:
            while queue and len(in_flight) < self.limit and not stop.is_set():
                index, case = queue.pop(0)
                started(index)
                in_flight[self.submit(case)] = (index, case)
            if not in_flight:
                return
            for future in self.wait(list(in_flight)):
                index, case = in_flight.pop(future)
                finished(index, self.result(future, case))

    def result(self, future, case: Case) -> CaseResult:
        try:
            return future.result()
        except Exception as exc:  # the worker died (killed, out of memory, crashed) or the task was lost
            self.lost(exc)
            return CaseResult(output=case.output.name, status="failed",
                              error=f"{case.where}: the worker running this case died or was lost "
                                    f"({type(exc).__name__}: {exc}); nothing was written")

    def lost(self, exc: Exception) -> None:
        pass


class _PoolRunner(_BoundedRunner):
    """``workers`` processes (spawned: no forked torch/OpenMP state), each loading the model once."""

    def __init__(self, options: BatchOptions, workers: int, threads: int) -> None:
        from dataclasses import replace

        self.options = replace(options, threads=threads)
        self.workers, self.threads, self.limit = workers, threads, workers
        self.executor = self._start()

    def _start(self):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=init_pool_worker,
                                   initargs=(self.threads, logging.getLogger().getEffectiveLevel()))

    def submit(self, case: Case):
        return self.executor.submit(run_case, case, self.options)

    def wait(self, futures):
        from concurrent.futures import FIRST_COMPLETED, wait

        return wait(futures, return_when=FIRST_COMPLETED).done

    def lost(self, exc: Exception) -> None:
        from concurrent.futures.process import BrokenProcessPool

        if isinstance(exc, BrokenProcessPool):  # every process of a broken pool is gone: a new pool
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = self._start()

    def run(self, todo, started, finished, stop) -> None:
        try:
            super().run(todo, started, finished, stop)
        finally:
            self.executor.shutdown(wait=True)

    def abort(self) -> None:
        for process in list(getattr(self.executor, "_processes", {}).values()):  # stop now
            process.terminate()
        self.executor.shutdown(wait=False, cancel_futures=True)


class _DaskRunner(_BoundedRunner):
    """The cases as tasks on a Dask distributed cluster; each worker keeps its model loaded
    between tasks (the predictors of :mod:`.worker` live in the worker process)."""

    def __init__(self, scheduler, options: BatchOptions) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise LiteMedSAMError("--scheduler needs Dask distributed: "
                                  "pip install 'litemedsam-slicer[cluster]'") from None
        self.options = options
        if isinstance(scheduler, Client):
            self.client, self.own_client = scheduler, False
        else:
            try:
                self.client, self.own_client = Client(scheduler, timeout="30s"), True
            except (OSError, TimeoutError, ValueError) as exc:
                raise LiteMedSAMError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        slots = self.client.nthreads()
        if not slots:
            self.client.wait_for_workers(1, timeout=60)
            slots = self.client.nthreads()
        self.limit = max(1, sum(slots.values()))
        self.workers = len(slots)

    def describe(self) -> str:
        threads = self.options.threads or "cores / task slots"
        return (f"Dask cluster {self.client.scheduler.address}: {self.workers} worker(s), {self.limit} task "
                f"slot(s), {threads} thread(s) per task")

    def submit(self, case: Case):
        return self.client.submit(run_case_on_dask, case, self.options, pure=False, retries=1,
                                  key=f"litemedsam-{case.output.name}-{os.urandom(4).hex()}")

    def wait(self, futures):
        from distributed import wait

        return wait(futures, return_when="FIRST_COMPLETED").done

    def run(self, todo, started, finished, stop) -> None:
        try:
            super().run(todo, started, finished, stop)
        finally:
            if self.own_client:
                self.client.close()

    def abort(self) -> None:
        if self.own_client:
            self.client.close()
