"""The edge cut of negative prompts: what it takes away on synthetic and real slices, that it
stays near the prompt, and how a refinement session uses it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from LiteMedSAMLib.boxes import Box3D
from LiteMedSAMLib.edge_cut import MIN_REACH, REACH, edge_cut
from LiteMedSAMLib.errors import LiteMedSAMError
from LiteMedSAMLib.evaluation.metrics import dice
from LiteMedSAMLib.predictor import VolumePredictor
from LiteMedSAMLib.refinement import RefinementSession


def _object_with_leak():
    """A bright 40 x 40 square, and a mask that also covers a 7 x 7 grey bump beside it."""
    image = np.full((64, 80), 20, np.uint8)
    image[10:50, 10:50] = 200
    image[26:33, 50:57] = 120
    truth = image == 200
    mask = truth | (image == 120)
    return image, truth, mask


def test_a_click_in_a_leak_cuts_it_off_along_the_edge():
    image, truth, mask = _object_with_leak()
    leak = mask & ~truth
    cut = edge_cut(mask, image, np.array([[53, 29]]))
    # the bump, nothing of the square; the bump's own one-pixel rim stays (the mask's outer
    # border is a stronger edge than the one between bump and square: a tie there)
    assert np.all(cut <= leak) and np.array_equal(cut[27:32, 51:56], leak[27:32, 51:56])
    # a scribble along the bump (several pixels, one outside the mask) does the same
    scribble = np.array([[52, 27], [53, 29], [54, 31], [60, 29]])
    assert np.array_equal(edge_cut(mask, image, scribble), cut)


def test_no_cut_outside_the_mask_or_where_nothing_lies_beyond_reach():
    image, _, mask = _object_with_leak()
    assert not edge_cut(mask, image, np.array([[70, 5]])).any()  # the prompt is outside the mask
    small = np.zeros_like(mask)
    small[20:26, 20:26] = True  # depth 3 at the centre: all of it within reach
    assert not edge_cut(small, image, np.array([[23, 23]])).any()
    assert not edge_cut(np.zeros_like(mask), image, np.array([[23, 23]])).any()


def test_bad_input_is_a_clear_error():
    image, _, mask = _object_with_leak()
    with pytest.raises(LiteMedSAMError, match="outside the slice"):
        edge_cut(mask, image, np.array([[80, 5]]))
    with pytest.raises(LiteMedSAMError, match="on its grid"):
        edge_cut(mask, image[:, :40], np.array([[20, 20]]))


def test_the_cut_never_reaches_farther_than_its_reach():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (96, 96)).astype(np.uint8)  # edges everywhere, none that matters
    mask = np.zeros((96, 96), bool)
    mask[8:88, 8:88] = True
    click = np.array([[20, 50]])
    cut = edge_cut(mask, image, click)
    depth = ndimage.distance_transform_edt(mask)[50, 20]
    ys, xs = np.nonzero(cut)
    assert cut[50, 20] and np.all(cut <= mask)
    assert np.hypot(xs - 20, ys - 50).max() <= max(REACH * depth, MIN_REACH)
    rgb = np.repeat(image[..., None], 3, axis=-1)  # an RGB slice: the channels' mean
    assert np.array_equal(edge_cut(mask, rgb, click), cut)


def test_a_leak_on_a_real_mr_slice_is_cut_without_touching_the_lobe(example):
    """The shipped example's lobes with a leak 8 px into their surroundings on one side: a
    click at the leak's deepest pixel cuts much of it off along the lobe's border (the deepest
    pixel of the leak on this one slice: the protocol's 3D click would sit on a z border)."""
    image, label, _ = example
    gains, touched, removed = [], 0, 0
    for lab, z, side in [(1, 8, "left"), (1, 11, "bottom"), (2, 8, "right"), (2, 15, "bottom"), (3, 11, "left")]:
        truth = label[z] == lab
        ys, xs = np.nonzero(truth)
        yy, xx = np.mgrid[:truth.shape[0], :truth.shape[1]]
        on_side = {"left": xx < np.percentile(xs, 30), "right": xx > np.percentile(xs, 70),
                   "bottom": yy > np.percentile(ys, 70)}[side]
        leaky = truth | (ndimage.binary_dilation(truth, iterations=8) & on_side)
        depth = ndimage.distance_transform_edt(np.pad(leaky & ~truth, 1))[1:-1, 1:-1]
        y, x = np.unravel_index(np.argmax(depth), depth.shape)
        cut = edge_cut(leaky, image[z], np.array([[x, y]]))
        gains.append(dice(leaky & ~cut, truth) - dice(leaky, truth))
        touched += int(np.count_nonzero(cut & truth))
        removed += int(np.count_nonzero(cut & ~truth))
        assert np.count_nonzero(cut & ~truth) > 50  # a good part of the leak's ~400 pixels
    assert min(gains) > 0.005 and np.mean(gains) > 0.025  # the cerebellum is large: its DSC moves least
    assert touched <= 0.02 * removed  # the lobes' own pixels: a few, where the border is faint


@pytest.fixture(scope="module")
def case(model, example):
    image, label, _ = example
    predictor = VolumePredictor(model)
    predictor.set_volume(image[8:15], "mr")
    gt = label[8:15] == 2
    return predictor, gt, Box3D.from_mask(gt)


def test_a_session_takes_the_cut_away_with_the_edit(case):
    """With ``edge_cut`` (the default) a negative click removes what the edit removes and the
    edge cut of the slice's mask at the click; without it, the edit alone."""
    predictor, _, box = case
    sessions = {}
    for flag in (True, False):
        s = RefinementSession(predictor, box, correction="edit", pipeline="official", edge_cut=flag)
        s.run()
        sessions[flag] = s
    z = sessions[True].mid
    before = sessions[True].mask[z].copy()
    assert np.array_equal(before, sessions[False].mask[z])
    depth = ndimage.distance_transform_edt(before)
    y, x = np.unravel_index(np.argmax(np.where(before > 0, -depth, -np.inf)), before.shape)  # a rim pixel
    for s in sessions.values():
        s.add_point(z, int(x), int(y), positive=False)
    with_cut, without = sessions[True].mask[z], sessions[False].mask[z]
    expected = without.astype(bool) & ~edge_cut(before, predictor.viewed_slice(z), np.array([[x, y]]))
    assert np.array_equal(with_cut.astype(bool), expected)
    assert with_cut[y, x] == 0 and np.all(with_cut <= before)


def test_the_cut_sees_the_slice_as_the_model_does_through_a_frame(case):
    """``viewed_slice``: the whole slice under the frame's window (what a windowed or cropped
    object's model sees, on the slice grid), so the cut finds the edges the model was shown."""
    from LiteMedSAMLib.predictor import Frame, FramedPredictor
    from LiteMedSAMLib.preprocessing import IntensityMapping

    predictor, _, _ = case
    window = IntensityMapping("window", lower=20, upper=120, vmin=20, vmax=120)
    view = FramedPredictor(predictor, Frame(30, 40, 120, 150, window))
    whole = view.viewed_slice(3)
    assert whole.shape == predictor.shape[1:]
    np.testing.assert_array_equal(whole[40:150, 30:120], predictor.frame_uint8(3, view.frame))
    assert not np.array_equal(whole, predictor.viewed_slice(3))  # not the volume's own mapping
    np.testing.assert_array_equal(FramedPredictor(predictor, Frame(30, 40, 120, 150)).viewed_slice(3),
                                  predictor.viewed_slice(3))  # a crop alone keeps the mapping
