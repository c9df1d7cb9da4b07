"""How sure a difference between two pipelines (or two corrections) is, over the same structures.

Every comparison in the suite and the click protocol is paired: both sides segment the same
structures. :func:`paired_difference` gives the mean of the per-structure differences with a
bootstrap confidence interval (``scipy.stats.bootstrap``, BCa), and counts how many structures
went up and down. Structures of one subject are not independent samples (one patient's spleen
and liver share its scanner, its contrast and its window), so with ``groups`` the bootstrap
resamples whole subjects (a cluster bootstrap) and the interval says how much the mean would
move with other subjects like these; it is wide with few subjects, and with fewer than
``MIN_GROUPS`` there is none: that is the honest answer. Without ``groups`` each structure is
its own sample, as most segmentation papers report it.
"""

from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from scipy import stats

from ..errors import LiteMedSAMError

# scipy >= 1.15 names the generator ``rng``; older releases (the floor is 1.10) ``random_state``
_RNG_ARGUMENT = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"

# fewer resampled units than this give no interval: a bootstrap over 2-4 subjects has a handful of
# distinct resamples, and its "interval" would only restate them
MIN_GROUPS = 5

# differences smaller than this count as "same" in the higher/lower counts (DSC is printed
# with three decimals)
SAME = 0.0005


@dataclass(frozen=True)
class PairedDifference:
    """Mean of ``a - b`` over paired samples, its confidence interval and the counts."""

    mean: float
    low: float | None  # None: fewer than MIN_GROUPS samples (or groups) for an interval
    high: float | None
    confidence: float
    samples: int
    groups: int  # resampled units: subjects with ``groups``, else the samples
    higher: int  # samples where a - b > SAME
    lower: int  # samples where a - b < -SAME

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self, unit: str = "structures") -> str:
        """One line: ``+0.104 (95% CI +0.071 to +0.139 over 6 subjects; 30 higher, 5 lower of 43)``."""
        if self.low is None:
            interval = f"no interval from {self.groups} {'subjects' if self.groups != self.samples else unit}"
        else:
            over = f" over {self.groups} subjects" if self.groups != self.samples else ""
            interval = f"{self.confidence:.0%} CI {self.low:+.3f} to {self.high:+.3f}{over}"
        return (f"{self.mean:+.3f} ({interval}; {self.higher} higher, {self.lower} lower "
                f"of {self.samples} {unit})")


def paired_difference(a: Sequence[float], b: Sequence[float], *, groups: Sequence | None = None,
                      confidence: float = 0.95, resamples: int = 9999,
                      seed: int = 0) -> PairedDifference:
    """The mean of ``a[i] - b[i]`` with a bootstrap confidence interval.

    Args:
        a, b: paired scores (the same structures, in the same order).
        groups: one key per sample (the subject it comes from): whole groups are resampled, and
            the statistic is the mean over the resampled groups' samples, so a subject with more
            structures weighs more, as in the plain mean. ``None``: every sample is its own group.
        confidence: the interval's confidence level.
        resamples: bootstrap resamples; ``seed`` makes the interval reproducible.

    Raises:
        LiteMedSAMError: ``a``, ``b`` (and ``groups``) differ in length, are empty, or hold a
            value that is not a finite number.
    """
    a_arr = np.asarray(a, dtype=np.float64)
    b_arr = np.asarray(b, dtype=np.float64)
    if a_arr.ndim != 1 or a_arr.shape != b_arr.shape:
        raise LiteMedSAMError(f"paired scores need two lists of the same length, got {a_arr.shape} and {b_arr.shape}")
    if a_arr.size == 0:
        raise LiteMedSAMError("paired scores are empty: nothing to compare")
    if not (np.isfinite(a_arr).all() and np.isfinite(b_arr).all()):
        raise LiteMedSAMError("paired scores hold a value that is not a finite number")
    if not 0 < confidence < 1:
        raise LiteMedSAMError(f"confidence must lie between 0 and 1, got {confidence}")
    diff = a_arr - b_arr
    if groups is None:
        keys = np.arange(diff.size)
    else:
        if len(groups) != diff.size:
            raise LiteMedSAMError(f"one group per paired score is needed: {len(groups)} groups, {diff.size} scores")
        _, first, keys = np.unique(np.asarray([str(g) for g in groups]), return_index=True, return_inverse=True)
        keys = np.argsort(np.argsort(first))[keys]  # numbered in order of appearance, as without groups
    sums = np.bincount(keys, weights=diff)
    counts = np.bincount(keys).astype(np.float64)
    n_groups = sums.size
    low = high = None
    # no interval from too few groups, nor where every group gives the same mean (nothing to resample)
    if n_groups >= MIN_GROUPS and np.ptp(sums / counts) > 1e-12:
        def mean_of(index: np.ndarray, axis: int = -1) -> np.ndarray:
            return sums[index].sum(axis=axis) / counts[index].sum(axis=axis)

        with warnings.catch_warnings():  # BCa warns on degenerate resamples; the interval says enough
            warnings.simplefilter("ignore")
            result = stats.bootstrap((np.arange(n_groups),), mean_of, confidence_level=confidence,
                                     n_resamples=resamples, method="BCa", vectorized=True,
                                     **{_RNG_ARGUMENT: np.random.default_rng(seed)})
        ci = result.confidence_interval
        if math.isfinite(ci.low) and math.isfinite(ci.high):
            low, high = float(ci.low), float(ci.high)
    elif n_groups >= MIN_GROUPS:  # all groups alike: the interval is the point
        low = high = float(diff.mean())
    return PairedDifference(mean=float(diff.mean()), low=low, high=high, confidence=confidence,
                            samples=int(diff.size), groups=int(n_groups),
                            higher=int((diff > SAME).sum()), lower=int((diff < -SAME).sum()))


def describe_both(by_structure: dict | PairedDifference, by_subject: dict | PairedDifference,
                  unit: str = "structures") -> str:
    """The line the suite and the click comparison print: the difference resampled by
    ``unit`` (:meth:`PairedDifference.describe`), then its interval resampled by subject."""
    plain, grouped = (p if isinstance(p, PairedDifference) else PairedDifference(**p)
                      for p in (by_structure, by_subject))
    subjects = (f"{grouped.low:+.3f} to {grouped.high:+.3f} over {grouped.groups} subjects"
                if grouped.low is not None else f"{grouped.groups} subject(s), too few for an interval")
    return f"{plain.describe(unit)}; {subjects}"
