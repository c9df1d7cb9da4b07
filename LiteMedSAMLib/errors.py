"""Errors raised for bad input or configuration.

Every problem a user can cause (a wrong file, a box outside the image, missing weights)
is reported as :class:`LiteMedSAMError` with a message that names the problem and, where
possible, how to fix it. It subclasses ``ValueError`` so that callers following the Slicer
convention (``except ValueError``) catch it too.
"""


class LiteMedSAMError(ValueError):
    """Bad input or configuration, with a message written for the user."""


class SegmentationCancelled(Exception):
    """The caller's cancel check asked to stop; no partial result is returned."""


def check_cancel(should_cancel) -> None:
    """Raise :class:`SegmentationCancelled` when ``should_cancel`` is given and returns True.

    ``should_cancel`` is a zero-argument callable (or None); long loops call this before
    each unit of work so that the Slicer module's Cancel button and Ctrl-C stop them cleanly.
    """
    if should_cancel is not None and should_cancel():
        raise SegmentationCancelled("segmentation cancelled")
