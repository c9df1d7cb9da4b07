"""Cohort batch segmentation (``litemedsam batch MANIFEST -o OUTDIR``): many images, each with
its boxes, resumable and fault-tolerant, in one process, a process pool or on a Dask cluster.

- :mod:`.manifest`: the CSV manifest (one row per box; rows with the same image are one case),
  its checks per row, the output names and the fingerprint that decides whether a case is redone.
- :mod:`.summary`: ``OUTDIR/summary.csv``, one row per case, rewritten atomically after each case.
- :mod:`.worker`: one case in a worker: read, segment, write atomically; the model is loaded once
  per worker and reused.
- :mod:`.runner`: :func:`run_batch`: resume, the thread plan, Ctrl-C, the three ways to run.
"""

from .manifest import Case, ManifestRow, read_manifest
from .runner import BatchOptions, BatchReport, plan_threads, run_batch

__all__ = ["BatchOptions", "BatchReport", "Case", "ManifestRow", "plan_threads", "read_manifest", "run_batch"]
