"""Errors raised for bad input or configuration.

Every problem a user can cause (a wrong file, a box outside the image, missing weights)
is reported as :class:`LiteMedSAMError` with a message that names the problem and, where
possible, how to fix it. It subclasses ``ValueError`` so that callers following the Slicer
convention (``except ValueError``) catch it too.
"""


class LiteMedSAMError(ValueError):
    """Bad input or configuration, with a message written for the user."""
