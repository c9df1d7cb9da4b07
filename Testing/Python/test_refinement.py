"""Interactive refinement on the real example MR: propagation parity, local edits, re-propagation
from the corrected slice, anchors and locks, undo, and clear errors.

The volume is the example's slices 8..14 (7 slices, encoded once for the module, eager model).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from LiteMedSAMLib.boxes import Box3D
from LiteMedSAMLib.errors import LiteMedSAMError
from LiteMedSAMLib.evaluation.clicks import next_click
from LiteMedSAMLib.evaluation.metrics import dice
from LiteMedSAMLib.predictor import VolumePredictor
from LiteMedSAMLib.propagation import propagate_box
from LiteMedSAMLib.refinement import (
    Prompt,
    RefinementSession,
    components_touching,
    sample_along,
    scribble_pixels,
)

Z0, Z1 = 8, 14


@pytest.fixture(scope="module")
def case(model, example):
    image, label, _ = example
    predictor = VolumePredictor(model)
    predictor.set_volume(image[Z0:Z1 + 1], "mr")
    gt = label[Z0:Z1 + 1] == 2  # right temporal lobe: the model under-segments it
    return predictor, gt, Box3D.from_mask(gt)


@pytest.fixture()
def session(case):
    """The edit heuristic (these tests are about its local edits; the trained click decoder,
    the default where installed, has its own tests in test_click_decoder.py)."""
    predictor, _, box = case
    s = RefinementSession(predictor, box, correction="edit", pipeline="official")
    s.run()
    return s


def test_run_is_the_official_propagation(case, session):
    predictor, _, box = case
    assert np.array_equal(session.mask, propagate_box(predictor, box))
    assert session.mid == 11 - Z0


def test_positive_click_adds_near_it_and_nothing_elsewhere(case, session):
    predictor, gt, _ = case
    z = session.mid
    before = session.mask.copy()
    runs = predictor.encoder_runs
    click = next_click(before[z][None], gt[z][None])
    assert click.positive  # the model misses part of the lobe
    changed = session.add_point(z, click.x, click.y, positive=True)
    after = session.mask[z]
    assert z in changed and after[click.y, click.x] == 1
    assert np.all(after >= before[z])  # a positive edit only adds
    assert dice(after, gt[z]) > dice(before[z], gt[z]) + 0.02
    assert predictor.encoder_runs == runs  # re-prompting reuses the cached embeddings
    # Slices that did not change are untouched bitwise; the changed ones are contiguous
    # from the corrected slice (propagation outward).
    for k in range(len(gt)):
        if k not in changed:
            assert np.array_equal(session.mask[k], before[k])
    assert changed == list(range(min(changed), max(changed) + 1))


def test_negative_click_removes_only_near_it(session):
    z = session.mid
    before = session.mask[z].copy()
    # A reference that is the model's own mask minus its left half: everything there is wrong.
    _, xs = np.nonzero(before)
    cut = int(np.median(xs))
    truth = before.copy()
    truth[:, :cut] = 0
    click = next_click(before[None], truth[None])
    assert not click.positive and click.x < cut
    session.add_point(z, click.x, click.y, positive=False)
    after = session.mask[z]
    assert after[click.y, click.x] == 0
    assert np.all(after <= before)  # a negative edit only removes
    assert dice(after, truth) > dice(before, truth)


def test_repropagation_stops_at_locked_slices_and_anchors(case, session):
    _, gt, _ = case
    top = len(gt) - 1
    session.lock(top)
    locked = session.mask[top].copy()
    z = session.mid + 1
    click = next_click(session.mask[z][None], gt[z][None])
    before = session.mask.copy()
    changed = session.add_point(z, click.x, click.y, click.positive)
    assert top not in changed and np.array_equal(session.mask[top], locked)
    assert session.mid not in changed and np.array_equal(session.mask[session.mid], before[session.mid])
    assert z in session.anchors and top in session.anchors


def test_removing_the_prompts_gives_back_plain_propagation(session):
    plain = session.mask.copy()
    z = session.mid + 2
    session.add_point(z, 120, 90, positive=True)
    session.set_prompts(z, [])
    assert np.array_equal(session.mask, plain)
    assert z not in session.anchors


def test_undo_restores_masks_and_prompts_exactly(session):
    z = session.mid
    states = [session.mask.copy()]
    session.add_point(z, 120, 100, positive=True)
    states.append(session.mask.copy())
    session.add_scribble(z - 1, [[110, 95], [125, 105], [130, 115]], positive=True)
    states.append(session.mask.copy())
    session.clear_slice(z - 2)
    assert not session.mask[z - 2].any()
    for expected in reversed(states):
        session.undo()
        assert np.array_equal(session.mask, expected)
    assert not session.prompts and not session.cleared and not session.can_undo
    with pytest.raises(LiteMedSAMError, match="nothing to undo"):
        session.undo()


def test_cleared_slice_stays_empty_and_stops_propagation(session):
    z = session.mid - 1
    session.clear_slice(z)
    assert not session.mask[z].any()
    session.add_point(session.mid, 120, 100, positive=True)
    assert not session.mask[z].any()
    changed = session.unlock(z)
    assert z in changed and session.mask[z].any()


def test_remove_prompt_replays_the_remaining_ones(session):
    z = session.mid
    session.add_point(z, 120, 100, positive=True)
    first = session.mask[z].copy()
    session.add_point(z, 100, 80, positive=False)
    session.remove_prompt(z)
    assert np.array_equal(session.mask[z], first)


def test_clear_errors(case):
    predictor, _, box = case
    fresh = RefinementSession(predictor, box, pipeline="official")
    with pytest.raises(LiteMedSAMError, match=r"run\(\)"):
        fresh.add_point(3, 10, 10)
    fresh.run()
    with pytest.raises(LiteMedSAMError, match="out of range"):
        fresh.add_point(99, 10, 10)
    with pytest.raises(LiteMedSAMError, match="outside the slice"):
        fresh.add_point(3, -1, 10)
    with pytest.raises(LiteMedSAMError, match="outside the slice"):
        fresh.add_scribble(3, [[500, 500], [600, 600]])
    with pytest.raises(LiteMedSAMError, match="no point or scribble"):
        fresh.remove_prompt(3)
    with pytest.raises(LiteMedSAMError, match="unknown correction"):
        RefinementSession(predictor, box, correction="magic", pipeline="official")
    narrow = RefinementSession(predictor, (box.x0, box.y0, 2, box.x1, box.y1, 4), pipeline="official")
    narrow.run()
    with pytest.raises(LiteMedSAMError, match="outside the box's slices 2..4"):
        narrow.add_point(6, 10, 10)


def test_scribble_helpers():
    pixels = scribble_pixels([[0, 0], [4, 2], [4, 2], [-3, 2]], (10, 10))
    assert pixels[0].tolist() == [0, 0] and pixels[-1].tolist() == [0, 2]  # clipped at x < 0
    assert np.all(np.abs(np.diff(pixels, axis=0)).max(1) == 1)  # connected, no repeats
    assert len(sample_along(pixels, 3)) == 3 and sample_along(pixels, 3)[0].tolist() == [0, 0]
    mask = np.zeros((6, 6), bool)
    mask[0:2, 0:2] = mask[4:6, 4:6] = True
    touched = components_touching(mask, np.array([[5, 5]]))
    assert touched.sum() == 4 and touched[5, 5] and not touched[0, 0]
    with pytest.raises(LiteMedSAMError, match="at least one point"):
        scribble_pixels(np.zeros((0, 2)), (5, 5))
    # not a polyline of (x, y) points: our message, not numpy's reshape error
    for bad in ([1, 2, 3], np.zeros((2, 3)), np.zeros((2, 2, 2)), [["a", "b"]]):
        with pytest.raises(LiteMedSAMError, match=r"polyline of \(x, y\)"):
            scribble_pixels(bad, (5, 5))


def test_prompt_points_are_pixels():
    assert Prompt(np.array([[3, 4]]), True).is_point
    assert not Prompt(np.array([[3, 4], [4, 4]]), True).is_point


def test_a_negative_edit_trims_instead_of_erasing():
    from LiteMedSAMLib.refinement import _at_most_half

    current = np.zeros((40, 40), bool)
    current[5:35, 5:35] = True
    prompt = Prompt(np.array([[8, 20]]), False)          # near the left edge of the square
    everything = current.copy()
    trimmed = _at_most_half(everything, current, prompt)
    assert trimmed[20, 8] and not trimmed[20, 30]         # around the prompt only
    assert 0 < trimmed.sum() <= current.sum() // 2
    small = np.zeros_like(current)
    small[5:35, 5:12] = True                              # a strip: under half, kept as is
    assert np.array_equal(_at_most_half(small, current, prompt), small)


def test_a_prompt_no_output_follows_sets_a_disc_around_it():
    from LiteMedSAMLib.refinement import _disc_at_prompt

    current = np.zeros((60, 60), bool)
    current[20:40, 10:30] = True
    near = Prompt(np.array([[35, 30]]), True)             # 6 pixels right of the mask's edge (x = 29)
    added = _disc_at_prompt(current, current, near, most=20.0) & ~current
    assert added[30, 35] and added[30, 30] and added[30, 41] and not added[30, 42]  # radius 6
    assert not added[30, 50] and not added[45, 35]         # nothing beyond the disc
    capped = _disc_at_prompt(current, current, near, most=3.0) & ~current
    assert capped[30, 38] and not capped[30, 39]           # at most ``most``
    empty = np.zeros_like(current)
    on_empty = _disc_at_prompt(empty, empty, near, most=4.0)
    assert on_empty.sum() == np.count_nonzero(np.hypot(*np.mgrid[-4:5, -4:5]) <= 4)
    inside = Prompt(np.array([[13, 30]]), False)          # 4 pixels from the background (x = 9)
    cut = _disc_at_prompt(current, current, inside, most=1.0)
    assert not cut[30, 13] and not cut[30, 10] and cut[30, 18] and cut[22, 13]
    yy, xx = np.mgrid[:60, :60]
    assert np.array_equal(current & ~cut, current & (np.hypot(yy - 30, xx - 13) <= 4))  # radius 4, from the mask only


@pytest.mark.parametrize("positive", [True, False])
def test_a_click_always_changes_its_own_pixel(case, positive):
    """Where the edit's rules leave the clicked pixel as it was (here: an edit that changes
    nothing, as when no candidate follows and the halving keeps the mask), the disc around it
    is set: the user never clicks to no effect. ``replace`` stays SAM's re-prompt as it is."""
    predictor, _, box = case

    class Unmoved(RefinementSession):
        def _edit(self, z, chain):
            return chain.masks[-1].copy()

    session = Unmoved(predictor, box, correction="edit", pipeline="official")
    session.run()
    z = session.mid
    before = session.mask[z].astype(bool)
    depth = ndimage.distance_transform_edt(before)
    if positive:  # a background pixel 5 pixels right of the mask, on its middle row
        y = int(np.median(np.nonzero(before)[0]))
        x = int(np.nonzero(before[y])[0].max()) + 5
    else:         # the mask pixel farthest from the background
        y, x = np.unravel_index(np.argmax(depth), depth.shape)
    session.add_point(z, x, y, positive=positive)
    after = session.mask[z].astype(bool)
    assert after[y, x] == positive
    changed = after ^ before
    assert np.all(after >= before) if positive else np.all(after <= before)
    cy, cx = np.nonzero(changed)
    radius = 5 if positive else depth[y, x]
    assert np.hypot(cy - y, cx - x).max() <= radius + 1e-9
    plain = Unmoved(predictor, box, correction="replace", pipeline="official")
    plain.run()
    plain.add_point(z, x, y, positive=positive)
    assert np.array_equal(plain.mask[z], before)  # the re-prompt (here: unmoved) is left as it is


def test_scribble_as_mask_prompt(case):
    """Models trained with scribble masks (Swin-LiteMedSAM) get positive scribbles as a mask
    prompt on the stroke's model-space pixels; the edit still only adds near the stroke."""
    from LiteMedSAMLib.refinement import _scribble_mask

    stroke = scribble_pixels([[10, 20], [60, 20]], (170, 158))
    mask = _scribble_mask(stroke, (170, 158), None)
    assert mask.shape == (1, 1, 256, 256)
    ys, xs = np.nonzero(mask[0, 0].numpy())
    scale = 256 / 170
    assert set(np.unique(ys)) <= {int(20 * scale), int(20 * scale) + 1}
    assert xs.min() == int(10 * scale) and xs.max() <= int(61 * scale)
    predictor, _, box = case
    session = RefinementSession(predictor, box, correction="edit", scribble_prompt="mask", pipeline="official")
    session.run()
    z = session.mid
    before = session.mask[z].copy()
    session.add_scribble(z, [[110, 100], [125, 110]], positive=True)
    assert np.all(session.mask[z] >= before)
    with pytest.raises(LiteMedSAMError, match="scribble_prompt"):
        RefinementSession(predictor, box, scribble_prompt="paint")


def test_a_positive_edit_larger_than_the_box_is_passed_over(session):
    current = np.zeros((170, 158), bool)
    current[100:110, 120:130] = True
    box = np.array([160.0, 150.0, 200.0, 190.0])  # model space: about 26 x 26 pixels of this slice
    prompt = Prompt(np.array([[131, 105]]), True)
    small = current.copy()
    small[100:110, 130:135] = True                  # adds 50 pixels next to the click
    huge = np.zeros_like(current)
    huge[60:160, 100:150] = True                    # adds ~4900 pixels
    kept = list(session._no_larger_than_box(iter([huge, small]), prompt, current, box))
    assert len(kept) == 1 and kept[0] is small


@pytest.mark.parametrize("correction", ["edit", "trained"])
def test_deferred_propagation_gives_the_same_result_in_two_steps(case, correction):
    """A viewer can show the clicked slice first: the slice alone, then the propagation, end
    where an immediate correction ends, and undo takes back both as one step."""
    predictor, gt, box = case
    session = RefinementSession(predictor, box, correction=correction, pipeline="official")
    session.run()
    immediate = RefinementSession(predictor, box, correction=correction, pipeline="official")
    immediate.run()
    z = session.mid + 1
    click = next_click(session.mask[z][None], gt[z][None])
    expected_changed = immediate.add_point(z, click.x, click.y, click.positive)
    assert len(expected_changed) > 1
    before = session.mask
    session.defer_propagation = True
    first = session.add_point(z, click.x, click.y, click.positive)
    assert first == [z]
    after_first = session.mask
    assert all(np.array_equal(after_first[k], before[k]) for k in range(len(gt)) if k != z)
    rest = session.propagate_pending()
    assert sorted(first + rest) == expected_changed
    assert np.array_equal(session.mask, immediate.mask)
    assert session.propagate_pending() == []
    session.undo()
    assert np.array_equal(session.mask, before)


def test_a_first_click_reuses_the_logits_propagation_computed(case, monkeypatch):
    """A propagated slice's first prompt starts from its box's logits: propagation computed
    them already, so the click runs no decoder for the box alone (one decoder run less per
    clicked slice), and the correction is the one from logits computed afresh."""
    predictor, gt, box = case
    sessions = []
    for forget in (False, True):
        session = RefinementSession(predictor, box, correction="edit", pipeline="official")
        session.run()
        if forget:
            session._box_logits.clear()
        box_alone = []
        original = session.predictor.predict_model_box

        def counting(z, box_model, points_model=None, point_labels=None, mask_input=None, *args,
                     original=original, box_alone=box_alone, **kwargs):
            if points_model is None and mask_input is None:
                box_alone.append((z, np.asarray(box_model).copy()))
            return original(z, box_model, points_model, point_labels, mask_input, *args, **kwargs)

        monkeypatch.setattr(session.predictor, "predict_model_box", counting)
        z = session.mid + 1
        click = next_click(session.mask[z][None], gt[z][None])
        session.defer_propagation = True
        session.add_point(z, click.x, click.y, click.positive)
        monkeypatch.undo()
        slice_box = session.slice_box(z)
        sessions.append((session, [b for k, b in box_alone if k == z and np.array_equal(b, slice_box)]))
    (cached, reruns_cached), (fresh, reruns_fresh) = sessions
    assert reruns_cached == [] and len(reruns_fresh) == 1
    assert np.array_equal(cached.mask, fresh.mask)
    assert cached.propagate_pending() == fresh.propagate_pending()
    assert np.array_equal(cached.mask, fresh.mask)


def test_the_logits_a_session_keeps_hold_only_their_own_memory(case):
    """The eager decoder computes SAM's four masks and the single output is a view of them: a
    session keeps one slice's logits per propagated slice, and a view kept 1 MB alive per
    slice instead of 256 KB (a 300-slice box: 300 MB instead of 77 MB)."""
    predictor, _, box = case
    session = RefinementSession(predictor, box, correction="edit", pipeline="official")
    session.run()
    kept = [logits for _, logits in session._box_logits.values()]
    assert len(kept) == len(box.z_range)
    assert all(t.untyped_storage().nbytes() == t.numel() * t.element_size() == 256 * 256 * 4 for t in kept)
    for prediction in predictor.predict_multimask(session.mid, session.slice_box(session.mid)):
        t = prediction.low_res_logits
        assert t.shape == (1, 1, 256, 256) and t.untyped_storage().nbytes() == 256 * 256 * 4


def test_replace_correction_is_the_single_output_re_prompt(case):
    """The baseline of the click table: the slice becomes the single output prompted with the
    box, the points and the box result's logits."""
    from LiteMedSAMLib.preprocessing import points_to_model

    predictor, _, box = case
    session = RefinementSession(predictor, box, correction="replace", pipeline="official")
    session.run()
    z = session.mid
    base = predictor.predict_model_box(z, session.slice_box(z))
    session.add_point(z, 120, 100, positive=True)
    points = points_to_model(np.array([[120.0, 100.0]]), predictor.shape[1:])
    box_model = session._box_with(session.slice_box(z), session.prompts[z])
    expected = predictor.predict_model_box(z, box_model, points, np.array([1]), base.low_res_logits).mask
    assert np.array_equal(session.slice_mask(z), expected)


def _meet_reference(session) -> np.ndarray:
    """The session's mask as the ``meet`` rule defines it, computed from scratch: anchors as they
    are; every other slice propagated (official rule: its neighbour's mask box, the user's box
    where that is empty) from the nearer of the anchors around it, the one towards the start
    slice unless the other is a corrected slice strictly nearer."""
    mask, anchors, mid = session.mask, session.anchors, session.mid
    n = mask.shape[0]
    sources = {}
    for k in set(range(n)) - anchors:
        out = 1 if k > mid else -1
        inner = next(a for a in range(k - out, mid - out, -out) if a in anchors)
        outer = next((a for a in range(k + out, n if out > 0 else -1, out) if a in anchors), None)
        pulled = outer is not None and outer in session.prompts and abs(outer - k) < abs(k - inner)
        sources[k] = (outer, k + out) if pulled else (inner, k - out)
    for k in sorted(sources, key=lambda k: abs(k - sources[k][0])):  # each after its source
        box = session.predictor.box_from_mask(mask[sources[k][1]])
        box = session._mid_box if box is None else box
        mask[k] = session.predictor.predict_model_box(k, box).mask
    return mask


def test_meet_repropagates_towards_the_start_slice_from_a_nearer_correction(case):
    """With the pipeline's ``meet`` a correction also reaches the slices between it and the start
    slice that are nearer to it; after every interaction (clicks, a lock, a cleared slice, a
    correction taken back, undo) the mask is what propagating from scratch gives."""
    predictor, gt, box = case
    session = RefinementSession(predictor, box, correction="edit", pipeline="official+meet")
    plain = session.run().copy()
    assert session.mid == 3 and len(gt) == 7
    states = [plain]

    def click(z):
        c = next_click(session.mask[z][None], gt[z][None])
        changed = session.add_point(z, c.x, c.y, c.positive)
        states.append(session.mask.copy())
        return changed

    changed = click(6)
    assert np.array_equal(session.mask, _meet_reference(session))
    assert 5 in changed and not np.array_equal(session.mask[5], plain[5])  # pulled by slice 6
    assert np.array_equal(session.mask[4], plain[4])  # a tie: the start slice's side
    # without meet the same click changes nothing between it and the start slice
    official = RefinementSession(predictor, box, correction="edit", pipeline="official")
    official.run()
    c = next_click(official.mask[6][None], gt[6][None])
    assert official.add_point(6, c.x, c.y, c.positive) == [6]

    click(0)
    assert np.array_equal(session.mask, _meet_reference(session))
    session.lock(5)
    states.append(session.mask.copy())
    assert np.array_equal(session.mask, states[-2])  # a lock changes nothing
    session.set_prompts(6, [])  # slice 6 back to propagation, now from the locked slice 5
    states.append(session.mask.copy())
    assert np.array_equal(session.mask, _meet_reference(session))
    session.unlock(5)
    states.append(session.mask.copy())
    assert np.array_equal(session.mask, _meet_reference(session))
    session.clear_slice(2)
    states.append(session.mask.copy())
    assert not session.mask[2].any() and np.array_equal(session.mask, _meet_reference(session))
    session.set_prompts(0, [])
    session.unlock(2)
    assert np.array_equal(session.mask, plain)  # nothing left: the box pass again
    session.undo()
    for expected in reversed(states):
        session.undo()
        assert np.array_equal(session.mask, expected)
    assert not session.can_undo


@pytest.mark.parametrize("correction", ["edit", "trained-edit"])
def test_meet_deferred_propagation_ends_where_an_immediate_one_does(case, correction):
    predictor, gt, box = case
    sessions = [RefinementSession(predictor, box, correction=correction, pipeline="official+meet")
                for _ in range(2)]
    for s in sessions:
        s.run()
    sessions[1].defer_propagation = True
    for z in (6, 5, 0):
        c = next_click(sessions[0].mask[z][None], gt[z][None])
        expected = sessions[0].add_point(z, c.x, c.y, c.positive)
        first = sessions[1].add_point(z, c.x, c.y, c.positive)
        assert sorted(first + sessions[1].propagate_pending()) == expected
        assert np.array_equal(sessions[1].mask, sessions[0].mask)


def test_an_edit_within_reach_changes_only_near_the_click(case):
    """With ``reach`` a click's change is kept within that many times its depth on its side of
    the mask (at least MIN_REACH pixels): a click by the mask's rim changes the rim near it, a
    click deep in a missed part may change that part as far as it reaches."""
    from LiteMedSAMLib.edge_cut import MIN_REACH

    predictor, _, box = case
    session = RefinementSession(predictor, box, correction="edit", pipeline="official", reach=4.0)
    yy, xx = np.mgrid[:80, :80]
    current = np.zeros((80, 80), bool)
    current[20:40, 20:40] = True
    grown = ndimage.binary_dilation(current, iterations=2) & ~current  # a rim all around
    by_rim = Prompt(np.array([[40, 30]]), True)               # 1 pixel right of the mask (x = 39)
    kept = session._within_reach(grown, current, by_rim)
    assert kept[30, 40] and kept[30, 41]
    assert np.all(np.hypot(yy - 30, xx - 40)[kept] <= max(4.0 * 1, MIN_REACH))
    assert not kept[20:40, 18:20].any()                       # the far side of the rim is left alone
    lobe = np.zeros_like(current)
    lobe[24:36, 40:52] = True                                 # a missed part 12 pixels wide
    deep = Prompt(np.array([[46, 30]]), True)                 # its middle, 7 pixels from the mask
    assert np.array_equal(session._within_reach(lobe, current, deep), lobe)
    inside = Prompt(np.array([[22, 30]]), False)              # 3 pixels from the background (x = 19)
    removed = session._within_reach(current.copy(), current, inside)
    assert removed[30, 22] and not removed[30, 36]
    assert np.all(np.hypot(yy - 30, xx - 22)[removed] <= 4.0 * 3)
    session.reach = None                                      # off: the change as the edit made it
    assert np.array_equal(session._within_reach(grown, current, by_rim), grown)
    with pytest.raises(LiteMedSAMError, match="reach"):
        RefinementSession(predictor, box, correction="edit", pipeline="official", reach=0)
