"""Paired differences with bootstrap intervals (LiteMedSAMLib.evaluation.statistics): the numbers
the suite and the click comparison print beside every mean difference."""

import numpy as np
import pytest

from LiteMedSAMLib.errors import LiteMedSAMError
from LiteMedSAMLib.evaluation.statistics import PairedDifference, describe_both, paired_difference, paired_ratio


def test_a_clear_gain_has_an_interval_around_it_that_leaves_zero_out():
    rng = np.random.default_rng(3)
    b = rng.uniform(0.4, 0.9, 40)
    a = b + 0.1 + rng.normal(0, 0.03, 40)
    d = paired_difference(a, b)
    assert d.mean == pytest.approx(float(np.mean(a - b)))
    assert 0.0 < d.low < d.mean < d.high and d.low < 0.1 < d.high
    counts = (int(np.sum(a - b > 0.0005)), int(np.sum(a - b < -0.0005)))
    assert (d.samples, d.groups, (d.higher, d.lower)) == (40, 40, counts)
    assert paired_difference(a, b) == d  # the seed makes it reproducible


def test_no_difference_gives_an_interval_across_zero_and_counts_both_ways():
    rng = np.random.default_rng(5)
    b = rng.uniform(0.4, 0.9, 30)
    noise = rng.normal(0, 0.05, 30)
    d = paired_difference(b + noise - noise.mean(), b)
    assert abs(d.mean) < 1e-12 and d.low < 0 < d.high
    assert d.higher > 5 and d.lower > 5


def test_resampling_subjects_widens_the_interval_when_one_subject_carries_the_gain():
    """Five subjects of four structures each; all of the gain sits in one of them. Resampled by
    structure the gain looks solid; resampled by subject the interval reaches zero."""
    b = np.full(20, 0.6)
    a = b.copy()
    a[:4] += np.linspace(0.3, 0.5, 4)  # subject 0 only
    a[4:] += np.tile([0.01, -0.01, 0.005, -0.005], 4)
    groups = np.repeat(["s0", "s1", "s2", "s3", "s4"], 4)
    by_structure = paired_difference(a, b)
    by_subject = paired_difference(a, b, groups=groups)
    assert by_subject.mean == pytest.approx(by_structure.mean)  # same mean: subjects weigh by size
    assert by_subject.groups == 5 and by_structure.groups == 20
    assert (by_subject.high - by_subject.low) > 1.5 * (by_structure.high - by_structure.low)
    assert by_subject.low <= 0.005 < by_structure.low
    # one group per sample is the plain bootstrap
    assert paired_difference(a, b, groups=range(20)) == by_structure
    # four subjects are too few for an interval (a bootstrap over them only restates them)
    four = paired_difference(a[:16], b[:16], groups=groups[:16])
    assert four.groups == 4 and four.low is None and four.high is None


def test_degenerate_inputs_give_a_point_or_no_interval_and_say_so():
    same = paired_difference([0.8, 0.9, 0.7, 0.6, 0.5], [0.7, 0.8, 0.6, 0.5, 0.4])  # +0.1 everywhere
    assert same.low == same.high == pytest.approx(0.1) and same.higher == 5
    few = paired_difference([0.9, 0.8, 0.7], [0.5, 0.6, 0.8])
    assert few.low is None and few.high is None and few.mean == pytest.approx(0.5 / 3)
    assert few.describe() == "+0.167 (no interval from 3 structures; 2 higher, 1 lower of 3 structures)"
    one_subject = paired_difference([0.9, 0.7], [0.5, 0.6], groups=["x", "x"])
    assert one_subject.low is None and one_subject.groups == 1
    text = PairedDifference(0.049, 0.019, 0.107, 0.95, 19, 5, 14, 5).describe()
    assert text == "+0.049 (95% CI +0.019 to +0.107 over 5 subjects; 14 higher, 5 lower of 19 structures)"
    plain = PairedDifference(0.049, 0.019, 0.107, 0.95, 19, 19, 14, 5)
    grouped = PairedDifference(0.049, None, None, 0.95, 19, 4, 14, 5)
    assert describe_both(plain, grouped.as_dict()) == (
        "+0.049 (95% CI +0.019 to +0.107; 14 higher, 5 lower of 19 structures); "
        "4 subject(s), too few for an interval")


@pytest.mark.parametrize("a, b, groups, message", [
    ([0.1, 0.2], [0.1], None, "same length"),
    ([], [], None, "empty"),
    ([0.1, float("nan")], [0.1, 0.2], None, "finite"),
    ([0.1, 0.2], [0.1, 0.2], ["a"], "one group per paired score"),
])
def test_bad_input_is_named(a, b, groups, message):
    with pytest.raises(LiteMedSAMError, match=message):
        paired_difference(a, b, groups=groups)


def test_a_ratio_of_means_gets_an_interval_from_the_pairs_resampled_together():
    """How sure "the 2D start reaches 0.95 of the 3D box" is: mean(a) / mean(b) with the pairs
    (or subjects) resampled together."""
    rng = np.random.default_rng(7)
    b = rng.uniform(0.5, 0.9, 30)
    a = 0.9 * b + rng.normal(0, 0.02, 30)
    r = paired_ratio(a, b)
    assert r.ratio == pytest.approx(a.sum() / b.sum()) and r.low < r.ratio < r.high
    assert r.low < 0.9 < r.high < 0.95 and (r.samples, r.groups) == (30, 30)
    assert r.describe().startswith(f"{r.ratio:.3f} (95% CI {r.low:.3f} to {r.high:.3f} over 30 structures")
    by_subject = paired_ratio(a, b, groups=np.repeat(range(6), 5))
    assert by_subject.ratio == pytest.approx(r.ratio) and by_subject.groups == 6
    assert "over 6 subjects" in by_subject.describe()
    assert paired_ratio(a[:3], b[:3]).low is None
    with pytest.raises(LiteMedSAMError, match="positive mean"):
        paired_ratio([0.1, 0.2], [0.0, 0.0])
