"""One case in a worker (this process, a pool process or a Dask worker): read the image, build
its boxes, segment them together, write the output atomically.

Predictors (a loaded model with its converted backend) are kept in this module between cases,
keyed by model, weights, mode and threads, so that each worker loads and converts the model
once for the whole batch. A predictor is lent to one case at a time (a Dask worker running
several tasks at once builds one per concurrent task).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

from ..errors import LiteMedSAMError, SegmentationCancelled
from .manifest import Case

log = logging.getLogger(__name__)

_IDLE: dict[tuple, list] = defaultdict(list)
_LOCK = threading.Lock()
_BUILT = {"count": 0}  # predictors built in this process: one per worker is the point


@dataclass
class CaseResult:
    """What a worker reports for one case (picklable)."""

    output: str
    status: str  # "done" or "failed"
    seconds: float = 0.0
    segments: list[str] = field(default_factory=list)
    voxels: list[int] = field(default_factory=list)
    error: str = ""
    pid: int = 0
    predictors_built: int = 0  # in the worker process so far


def predictors_built() -> int:
    """How many predictors this process has built (a batch worker builds one)."""
    return _BUILT["count"]


def _acquire(model: str | None, weights: str | None, mode: str | None, threads: int | None):
    from ..backends import DEFAULT_MODE, make_predictor
    from ..registry import load_model

    key = (model, weights, mode or DEFAULT_MODE, threads)
    with _LOCK:
        if _IDLE[key]:
            return key, _IDLE[key].pop()
    predictor = make_predictor(load_model(model, weights), mode or DEFAULT_MODE, threads=threads)
    with _LOCK:
        _BUILT["count"] += 1
    log.info("worker %d: loaded model %s (%s mode, %s threads)", os.getpid(), model or "default",
             predictor.mode, threads or "default")
    return key, predictor


def _release(key: tuple, predictor) -> None:
    with _LOCK:
        _IDLE[key].append(predictor)


def _boxes(case: Case, image, is_2d: bool):
    """``(names, boxes)`` of the case's rows in order, each box checked against the image with
    an error naming its row."""
    from ..boxes import Box3D, box_from_physical_corners, box_from_physical_extent, check_box, read_roi_file, roi_start
    from ..imageio import unique_names

    shape = tuple(reversed(image.GetSize()))
    shape = (1, *shape) if is_2d else shape
    names, boxes = [], []
    for row in case.rows:
        where = f"row {row.line}"
        try:
            if row.kind == "box":
                found = [(row.name, Box3D(*row.value))]
            elif row.kind == "box_mm":
                lo, hi = row.value[:3], row.value[3:]
                found = [(row.name, box_from_physical_extent([min(a, b) for a, b in zip(lo, hi)],
                                                             [max(a, b) for a, b in zip(lo, hi)], image))]
            else:
                rois = read_roi_file(row.value)
                found = [(row.name if row.name and len(rois) == 1 else
                          f"{row.name} {roi.name}" if row.name else roi.name,
                          box_from_physical_corners(roi.corners_lps, image)) for roi in rois]
            for name, box in found:
                if is_2d and (box.z0 != 0 or box.z1 != 0):
                    raise LiteMedSAMError(f"the image is 2D: its box needs z0 = z1 = 0, got {box.z0}..{box.z1}")
                checked, notes = check_box(box, shape, name=where)
                for note in notes:
                    log.warning("%s: %s", case.image.name, note)
                names.append(name or f"box {len(names) + 1}")
                # a one-slice ROI is a 2D start, as on the command line
                boxes.append(roi_start(checked) if row.kind == "roi" and not is_2d else checked)
        except LiteMedSAMError as exc:
            message = str(exc)
            raise LiteMedSAMError(message if message.startswith(where) else f"{where}: {message}") from None
    return unique_names(names), boxes


def run_case(case: Case, options, progress=None, should_cancel=None) -> CaseResult:
    """Segment and write one case; never raises for a problem of the case itself (it is
    reported as a failed :class:`CaseResult`). ``SegmentationCancelled`` and
    ``KeyboardInterrupt`` pass through (nothing is written then)."""
    start = time.perf_counter()
    result = CaseResult(output=case.output.name, status="failed", pid=os.getpid())
    try:
        result.segments, result.voxels = _segment_and_write(case, options, progress, should_cancel)
        result.status = "done"
    except (SegmentationCancelled, KeyboardInterrupt):
        raise
    except LiteMedSAMError as exc:
        message = str(exc)
        result.error = message if message.startswith("row") else f"{case.where}: {message}"
    except MemoryError:
        result.error = f"{case.where}: out of memory while segmenting {case.image.name}"
    except Exception as exc:  # a bug or an unforeseen file problem: this case fails, the batch goes on
        log.debug("case %s failed", case.image, exc_info=True)
        result.error = f"{case.where}: unexpected {type(exc).__name__}: {exc}"
    result.seconds = time.perf_counter() - start
    result.predictors_built = predictors_built()
    return result


def _segment_and_write(case: Case, options, progress, should_cancel) -> tuple[list[str], list[int]]:
    from ..imageio import check_image, read_image, write_segmentation
    from ..segmentation import segment_image

    image = read_image(case.image)
    info = check_image(image)
    names, boxes = _boxes(case, image, info.dimension == 2)
    key, predictor = _acquire(case.model or options.model, options.weights, options.mode, options.threads)
    try:
        masks, _ = segment_image(image, boxes, predictor=predictor, preset=case.preset or options.preset,
                                 window=options.window, progress=progress, should_cancel=should_cancel,
                                 **options.segment_options)
    finally:
        _release(key, predictor)
    warning = write_segmentation(case.output, masks, image, names)
    if warning:
        log.warning("%s: %s", case.output.name, warning)
    return names, [int(m.sum()) for m in masks]


# ------------------------------------------------------------------------------ process entry points
def init_pool_worker(threads: int | None, log_level: int) -> None:
    """Initializer of a pool process: its thread count; Ctrl-C is the parent's to handle (it
    stops after the current cases), so the worker ignores SIGINT."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=log_level, format="%(levelname)s: %(message)s")
    if threads:
        import torch

        torch.set_num_threads(threads)


def run_case_on_dask(case: Case, options) -> CaseResult:
    """A Dask task: :func:`run_case` with threads chosen for this worker when not given
    (the worker's cores divided by its task slots)."""
    from dataclasses import replace

    if options.threads is None:
        try:
            from distributed import get_worker

            slots = max(1, get_worker().state.nthreads)
        except (ImportError, ValueError, AttributeError):
            slots = 1
        options = replace(options, threads=max(1, (os.cpu_count() or 1) // slots))
    return run_case(case, options)
