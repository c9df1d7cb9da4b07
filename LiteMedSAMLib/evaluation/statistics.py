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
        """One line: ``+0.104 (95% CI +0.066 to +0.172; 32 higher, 5 lower of 43 structures)``
        (with ``over N subjects`` after the interval where subjects were resampled)."""
        if self.low is None:
            interval = f"no interval from {_count(self.groups, 'subjects' if self.groups != self.samples else unit)}"
        else:
            over = f" over {self.groups} subjects" if self.groups != self.samples else ""
            interval = f"{self.confidence:.0%} CI {self.low:+.3f} to {self.high:+.3f}{over}"
        return (f"{self.mean:+.3f} ({interval}; {self.higher} higher, {self.lower} lower "
                f"of {_count(self.samples, unit)})")


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
    a_arr, b_arr, keys = _paired(a, b, groups, confidence)
    diff = a_arr - b_arr
    sums = np.bincount(keys, weights=diff)
    counts = np.bincount(keys).astype(np.float64)
    low, high = _interval(sums / counts, lambda i: sums[i].sum(axis=-1) / counts[i].sum(axis=-1),
                          float(diff.mean()), confidence, resamples, seed)
    return PairedDifference(mean=float(diff.mean()), low=low, high=high, confidence=confidence,
                            samples=int(diff.size), groups=int(sums.size),
                            higher=int((diff > SAME).sum()), lower=int((diff < -SAME).sum()))


@dataclass(frozen=True)
class PairedRatio:
    """``mean(a) / mean(b)`` over paired samples and its confidence interval."""

    ratio: float
    low: float | None  # None: fewer than MIN_GROUPS samples (or groups)
    high: float | None
    confidence: float
    samples: int
    groups: int

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """One line: ``0.903 (95% CI 0.801 to 0.998 over 23 structures)``."""
        unit = "subjects" if self.groups != self.samples else "structures"
        if self.low is None:
            return f"{self.ratio:.3f} (no interval from {self.groups} {unit})"
        return (f"{self.ratio:.3f} ({self.confidence:.0%} CI {self.low:.3f} to {self.high:.3f} "
                f"over {self.groups} {unit})")


def paired_ratio(a: Sequence[float], b: Sequence[float], *, groups: Sequence | None = None,
                 confidence: float = 0.95, resamples: int = 9999, seed: int = 0) -> PairedRatio:
    """``mean(a) / mean(b)`` with a bootstrap interval, the pairs (or ``groups``) resampled
    together: how sure "a reaches 0.95 of b on average" is (the 2D start against the 3D box).

    Raises:
        LiteMedSAMError: as :func:`paired_difference`, and where ``b`` sums to zero.
    """
    a_arr, b_arr, keys = _paired(a, b, groups, confidence)
    if b_arr.sum() <= 0:
        raise LiteMedSAMError("a ratio needs a positive mean to divide by")
    sums_a, sums_b = np.bincount(keys, weights=a_arr), np.bincount(keys, weights=b_arr)
    ratio = float(a_arr.sum() / b_arr.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        per_group = np.where(sums_b > 0, sums_a / np.where(sums_b > 0, sums_b, 1), np.nan)
    low, high = _interval(per_group, lambda i: sums_a[i].sum(axis=-1) / sums_b[i].sum(axis=-1),
                          ratio, confidence, resamples, seed)
    return PairedRatio(ratio=ratio, low=low, high=high, confidence=confidence, samples=int(a_arr.size),
                       groups=int(sums_a.size))


def _paired(a, b, groups, confidence: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked paired scores as float arrays and each one's group number (in order of first
    appearance; each its own without ``groups``)."""
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
    if groups is None:
        return a_arr, b_arr, np.arange(a_arr.size)
    if len(groups) != a_arr.size:
        raise LiteMedSAMError(f"one group per paired score is needed: {len(groups)} groups, {a_arr.size} scores")
    _, first, keys = np.unique(np.asarray([str(g) for g in groups]), return_index=True, return_inverse=True)
    return a_arr, b_arr, np.argsort(np.argsort(first))[keys]  # numbered in order of appearance


def _interval(per_group: np.ndarray, statistic, point: float, confidence: float, resamples: int,
              seed: int) -> tuple[float | None, float | None]:
    """The BCa bootstrap interval of ``statistic`` (group indices -> value, vectorised over the
    last axis), resampling the groups; ``(None, None)`` with fewer than :data:`MIN_GROUPS`,
    ``(point, point)`` where every group gives the same value (nothing to resample)."""
    if per_group.size < MIN_GROUPS:
        return None, None
    if np.all(np.isfinite(per_group)) and np.ptp(per_group) <= 1e-12:
        return point, point
    with warnings.catch_warnings():  # BCa warns on degenerate resamples; the interval says enough
        warnings.simplefilter("ignore")
        result = stats.bootstrap((np.arange(per_group.size),), lambda i, axis=-1: statistic(i),
                                 confidence_level=confidence, n_resamples=resamples, method="BCa",
                                 vectorized=True, **{_RNG_ARGUMENT: np.random.default_rng(seed)})
    ci = result.confidence_interval
    if math.isfinite(ci.low) and math.isfinite(ci.high):
        return float(ci.low), float(ci.high)
    return None, None


def by_structure_and_subject(a: Sequence[float], b: Sequence[float], subjects: Sequence, *,
                             compare=paired_difference) -> dict:
    """``compare`` (:func:`paired_difference` or :func:`paired_ratio`) twice, as the suite and
    the tools record it and :func:`describe_both` reads it: ``by_structure`` with every pair
    its own sample, ``by_subject`` with the ``subjects`` (one per pair) resampled whole."""
    return {"by_structure": compare(a, b).as_dict(), "by_subject": compare(a, b, groups=subjects).as_dict()}


def describe_both(by_structure: dict | PairedDifference, by_subject: dict | PairedDifference,
                  unit: str = "structures") -> str:
    """The line the suite and the click comparison print: the difference resampled by
    ``unit`` (:meth:`PairedDifference.describe`), then its interval resampled by subject."""
    plain, grouped = (p if isinstance(p, PairedDifference) else PairedDifference(**p)
                      for p in (by_structure, by_subject))
    subjects = (f"{grouped.low:+.3f} to {grouped.high:+.3f} over {grouped.groups} subjects"
                if grouped.low is not None else f"{grouped.groups} subject(s), too few for an interval")
    return f"{plain.describe(unit)}; {subjects}"


def _count(n: int, plural: str) -> str:
    """``"1 label"``, ``"3 labels"`` (a plural ending in s)."""
    return f"{n} {plural[:-1] if n == 1 and plural.endswith('s') else plural}"
