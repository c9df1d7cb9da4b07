"""Run the heavy part of a segmentation in a background thread, Qt-free.

The widget starts a :class:`BackgroundRun` and polls it from a ``qt.QTimer`` on the main thread
(the pattern ``slicer.util`` uses for console processes): progress and the result are handed
over through :meth:`BackgroundRun.poll`, so MRML nodes are only ever touched on the main
thread. The work itself (``LiteMedSAMLogic.runJob``) uses numpy and torch only; torch releases
the GIL while it computes, so the GUI stays responsive.

An in-process thread (rather than a separate process as in MONAIAuto3DSeg) keeps the model and
the slice embeddings in memory between runs, so re-running a box costs only the decoder.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

RUNNING, DONE, CANCELLED, FAILED = "running", "done", "cancelled", "failed"


class BackgroundRun:
    """``work(progress, shouldCancel)`` in a daemon thread.

    ``work`` must call ``progress(done, total)`` as it goes, check ``shouldCancel()`` and raise
    an exception whose class is named ``SegmentationCancelled`` (the library's) to stop.
    """

    def __init__(self, work: Callable[[Callable[[int, int], None], Callable[[], bool]], Any]) -> None:
        self._work = work
        self._cancelRequested = threading.Event()
        self._lock = threading.Lock()
        self._progress: tuple[int, int] | None = None
        self.state = RUNNING
        self.result: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="LiteMedSAM", daemon=True)

    def start(self) -> BackgroundRun:
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask the work to stop before its next slice; the run ends in state ``cancelled``."""
        self._cancelRequested.set()

    def _reportProgress(self, done: int, total: int) -> None:
        with self._lock:
            self._progress = (done, total)

    def _run(self) -> None:
        try:
            result = self._work(self._reportProgress, self._cancelRequested.is_set)
        except BaseException as error:  # handed to the main thread, which reports it
            with self._lock:
                self.error = error
                cancelled = type(error).__name__ == "SegmentationCancelled"
                self.state = CANCELLED if cancelled else FAILED
            return
        with self._lock:
            self.result = result
            self.state = DONE

    def poll(self) -> tuple[str, tuple[int, int] | None]:
        """``(state, latest (done, total) progress or None)``; call it from the main thread."""
        with self._lock:
            return self.state, self._progress

    def wait(self, timeout: float | None = None) -> str:
        """Block until the work ends (for scripts and tests); returns the final state."""
        self._thread.join(timeout)
        return self.poll()[0]
