"""The predictor's cache and the 3D mid-slice propagation against the official algorithm."""

from __future__ import annotations

import numpy as np
import pytest

from LiteMedSAMLib.boxes import Box3D
from LiteMedSAMLib.errors import LiteMedSAMError, SegmentationCancelled
from LiteMedSAMLib.evaluation.metrics import dice
from LiteMedSAMLib.evaluation.reference import official_infer_3d
from LiteMedSAMLib.predictor import VolumePredictor
from LiteMedSAMLib.propagation import middle_slice, segment_slice, segment_volume, sweep_order
from LiteMedSAMLib.refinement import RefinementSession

# Left temporal lobe of the example over 5 slices: a real structure, kept short for CPU time.
LOBE = Box3D(14, 79, 9, 62, 130, 13)


def test_middle_slice_and_order_follow_the_official_script():
    # official: z_middle = int((z_max - z_min) / 2 + z_min) with z_min = z0 - 1, z_max = z1 + 1
    assert middle_slice(9, 13) == 11
    assert middle_slice(10, 11) == 10
    assert middle_slice(5, 5) == 5
    assert sweep_order(9, 13) == [11, 12, 13, 10, 9]
    assert sorted(sweep_order(0, 20)) == list(range(21))


@pytest.fixture(scope="module")
def predictor(model, example):
    image, _, _ = example
    p = VolumePredictor(model)
    p.set_volume(image, preset="mr")
    return p


def test_propagation_equals_official_script_on_real_volume(predictor, official, example):
    """Known-correct output: the official algorithm run with the official model."""
    image, label, _ = example
    progress = []
    (mask,) = segment_volume(predictor, [LOBE], progress=lambda d, t: progress.append((d, t)), pipeline="official")
    volume_uint8 = predictor.mapping.apply(image)
    challenge_box = np.array([[LOBE.x0, LOBE.y0, LOBE.z0 - 1, LOBE.x1, LOBE.y1, LOBE.z1 + 1]])
    expected = official_infer_3d(official, volume_uint8, challenge_box)
    np.testing.assert_array_equal(mask, (expected == 1).astype(np.uint8))
    assert progress == [(i, 5) for i in range(0, 6)]  # (0, total) when the work starts
    # only the box's slices are segmented, each slice has an object, inside the box's columns
    assert not mask[:LOBE.z0].any() and not mask[LOBE.z1 + 1:].any()
    assert all(mask[z].sum() > 300 for z in LOBE.z_range)
    # and it is the temporal lobe (LiteMedSAM leaves out part of the grey-matter rim here)
    truth = (label == 1)[LOBE.z0:LOBE.z1 + 1]
    assert dice(mask[LOBE.z0:LOBE.z1 + 1], truth) > 0.6


def test_overlapping_boxes_get_their_own_masks_and_share_embeddings(predictor, example):
    image, _, _ = example
    runs_before = predictor.encoder_runs
    inner = Box3D(20, 85, 10, 58, 125, 12)  # overlaps LOBE, same slices
    outer, second = segment_volume(predictor, [LOBE, inner], pipeline="official")
    assert predictor.encoder_runs == runs_before  # all 5 slices were encoded by the test above
    assert outer.any() and second.any()
    overlap = np.logical_and(outer, second).sum()
    assert overlap > 0.5 * second.sum()  # both keep the shared voxels: nothing overwritten
    assert not second[:10].any() and not second[13:].any()


def test_window_choice_keeps_the_frame_with_the_higher_predicted_iou(predictor):
    """The per-object window choice: the start slice is segmented both ways; the sweep that
    follows is exactly the chosen pipeline's (volume mapping = official, else official+window)."""
    from dataclasses import replace

    from LiteMedSAMLib.pipeline import get_pipeline

    windowed = get_pipeline("official+window")
    (official_mask,) = segment_volume(predictor, [LOBE], pipeline="official")
    (window_mask,) = segment_volume(predictor, [LOBE], pipeline=windowed)
    assert not np.array_equal(official_mask, window_mask)  # the two frames do differ here
    choosing = replace(windowed, name="choose", window_choice=True, window_choice_fit=1.0)
    for margin in (-3.0, 0.0, 3.0):  # always the window, the measured rule, never the window
        session = RefinementSession(predictor, LOBE, pipeline=replace(choosing, window_choice_margin=margin))
        choice = session.window_choice
        assert 0 < choice.iou_volume <= 1 and 0 < choice.iou_window <= 1
        assert 0 < choice.fit_volume <= 1 and 0 < choice.fit_window <= 1
        score_window, score_volume = choice.iou_window + choice.fit_window, choice.iou_volume + choice.fit_volume
        assert choice.kept_window == (score_window > score_volume + margin)
        expected = window_mask if choice.kept_window else official_mask
        np.testing.assert_array_equal(session.run(), expected)
    assert RefinementSession(predictor, LOBE, pipeline="official").window_choice is None


def test_crop_choice_keeps_the_crop_where_it_scores_higher_on_the_start_slice(predictor):
    """Lever ``cropchoice`` (measured, not in the default): after the window choice the start
    slice is also segmented in the crop-and-zoom of the chosen frame, and the sweep runs in the
    crop where its predicted IoU + box fit beats the uncropped frame's by the margin."""
    from dataclasses import replace

    from LiteMedSAMLib.pipeline import get_pipeline

    (official_mask,) = segment_volume(predictor, [LOBE], pipeline="official")
    (crop_mask,) = segment_volume(predictor, [LOBE], pipeline="official+crop")
    assert not np.array_equal(official_mask, crop_mask)
    choosing = get_pipeline("official+cropchoice")
    assert choosing.crop_choice and not choosing.crop and not choosing.is_official
    always = RefinementSession(predictor, LOBE, pipeline=replace(choosing, window_choice_margin=-3.0))
    np.testing.assert_array_equal(always.run(), crop_mask)
    never = RefinementSession(predictor, LOBE, pipeline=replace(choosing, window_choice_margin=3.0))
    np.testing.assert_array_equal(never.run(), official_mask)


def test_bound_keeps_the_box_pass_inside_the_users_box(predictor):
    """Lever ``bound``: a 3D box's masks lie inside its in-slice rectangle on every slice (the
    official sweep leaves this box on three of its five slices); a 2D start's only on its own
    slice, where the object's other slices may lie elsewhere."""
    from LiteMedSAMLib.boxes import SliceBox

    narrow = Box3D(20, 85, 9, 55, 125, 13)
    (official_mask,) = segment_volume(predictor, [narrow], pipeline="official")
    (bounded,) = segment_volume(predictor, [narrow], pipeline="official+bound")
    outside = np.ones(bounded.shape[1:], bool)
    outside[85:126, 20:56] = False
    assert official_mask[:, outside].any()  # the official masks do leave the box here
    assert not bounded[:, outside].any() and all(bounded[z].sum() > 300 for z in narrow.z_range)
    np.testing.assert_array_equal(bounded[11], official_mask[11] * ~outside)
    assert not np.array_equal(bounded, official_mask)
    start = SliceBox(11, 20, 85, 55, 125, z_min=9, z_max=13)
    (swept,) = segment_volume(predictor, [start], pipeline="official+bound")
    (unbounded,) = segment_volume(predictor, [start], pipeline="official")
    np.testing.assert_array_equal(swept[11], bounded[11])
    assert not swept[11][outside].any() and swept[:, outside].any()
    np.testing.assert_array_equal(swept, unbounded)  # its start slice stayed inside anyway


def test_bound2d_keeps_a_2d_starts_other_slices_inside_its_grown_box(predictor):
    """Lever ``bound2d``: a 2D start's other slices lie inside its box scaled about its centre
    (twice its width and height; clipped to the slice); its own slice is left to ``bound``."""
    from dataclasses import replace

    from LiteMedSAMLib.boxes import SliceBox
    from LiteMedSAMLib.pipeline import get_pipeline

    start = SliceBox(11, 20, 85, 55, 125, z_min=9, z_max=13)
    (unbounded,) = segment_volume(predictor, [start], pipeline="official+stop")
    grown = get_pipeline("official+stop+bound2d")
    assert grown.bound_2d_scale == 2.0 and not grown.is_official
    session = RefinementSession(predictor, start, pipeline=grown)
    assert session._scaled_box2d(1.0) == (20, 85, 55, 125)
    assert session._scaled_box2d(2.0) == (2, 64, 73, 146)  # 36 x 41 pixels -> 72 x 83 (rounded outwards)
    np.testing.assert_array_equal(session.run(), unbounded)  # this lobe stays inside 2x its box
    tight = RefinementSession(predictor, start, pipeline=replace(grown, bound_2d_scale=1.0))
    mask = tight.run()
    outside = np.ones(mask.shape[1:], bool)
    outside[85:126, 20:56] = False
    assert unbounded[[10, 12]][:, outside].any()  # the sweep leaves the drawn box next to its slice
    assert not mask[[10, 12]][:, outside].any() and mask[[10, 12]].sum() > 300
    np.testing.assert_array_equal(mask[11], unbounded[11])  # its own slice: not this lever's


def test_single_slice_and_reprompt_reuse_the_cache(predictor):
    runs = predictor.encoder_runs
    first = segment_slice(predictor, 11, LOBE.box2d)
    again = predictor.predict_slice(11, (20, 85, 58, 125))
    assert predictor.encoder_runs == runs
    assert first[11].sum() > 300 and not first[:11].any() and not first[12:].any()
    assert again.mask.shape == first.shape[1:] and 0.0 < again.iou <= 1.5


def test_cancel_mid_sweep_raises_and_returns_nothing(predictor):
    calls = []

    def cancel_after_two():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(SegmentationCancelled):
        segment_volume(predictor, [LOBE], should_cancel=cancel_after_two)
    assert len(calls) == 3


def test_lru_cache_is_bounded(model, example):
    image, _, _ = example
    p = VolumePredictor(model, cache_slices=2)
    p.set_volume(image[:3, :64, :64], preset="mr")
    for z in (0, 1, 2, 0):
        p.embedding(z)
    assert p.encoder_runs == 4 and not p.is_encoded(1) and p.is_encoded(0) and p.is_encoded(2)


def test_rgb_2d_image(model):
    rgb = np.zeros((80, 120, 3), np.uint8)
    rgb[20:60, 30:90] = (200, 60, 60)
    p = VolumePredictor(model)
    p.set_volume(rgb)
    assert p.shape == (1, 80, 120) and p.is_rgb
    result = p.predict_slice(0, (25, 15, 95, 65))
    assert dice(result.mask, np.pad(np.ones((40, 60)), ((20, 20), (30, 30)))) > 0.9


@pytest.mark.parametrize("volume, message", [
    (np.zeros((2, 3, 4, 5, 6)), "got 5 dimensions"),
    (np.zeros((0, 10, 10)), "the image is empty"),
    (np.array([[[1.0, np.nan], [0.0, 2.0]]]), "1 NaN or infinite voxels"),
    (np.zeros((4, 4), dtype=bool), "must be numbers"),
])
def test_bad_volumes(model, volume, message):
    with pytest.raises(LiteMedSAMError, match=message):
        VolumePredictor(model).set_volume(volume)


def test_bad_prompts(predictor, caplog):
    with pytest.raises(LiteMedSAMError, match="slice index 28 is out of range"):
        predictor.predict_slice(28, (1, 1, 10, 10))
    with pytest.raises(LiteMedSAMError, match="no box given"):
        segment_volume(predictor, [])
    with pytest.raises(LiteMedSAMError, match="inverted"):
        segment_volume(predictor, [(50, 10, 5, 40, 20, 6)])
    with pytest.raises(LiteMedSAMError, match="outside"):
        segment_volume(predictor, [(500, 500, 5, 600, 600, 6)])
    with pytest.raises(LiteMedSAMError, match="a prompt needs a box"):
        predictor.predict_slice(3, None)
    with pytest.raises(LiteMedSAMError, match="no image set"):
        VolumePredictor(predictor.model).predict_slice(0, (1, 1, 5, 5))
    # partly outside: clipped, with a warning saying so
    with caplog.at_level("WARNING"):
        predictor.predict_slice(11, (140, 79, 400, 130))
    assert any("clip" in r.message for r in caplog.records)


def test_window_ensemble_averages_both_windows_logits_on_every_slice(predictor):
    """Lever ``ensemble``: each slice is segmented through the volume's mapping and the box
    window; the mask is the one of their averaged low-resolution logits, and the sweep's next
    box comes from that mask."""
    from LiteMedSAMLib.pipeline import frame_for_box, get_pipeline, object_view
    from LiteMedSAMLib.predictor import EnsembleView, FramedPredictor
    from LiteMedSAMLib.preprocessing import logits_to_mask

    ensemble = get_pipeline("official+ensemble")
    assert ensemble.window and ensemble.window_ensemble and not ensemble.window_choice
    assert not ensemble.is_official
    view, choice = object_view(ensemble, predictor, LOBE.box2d, (LOBE.z0, LOBE.z1), 11)
    assert isinstance(view, EnsembleView) and choice is None
    frame = frame_for_box(ensemble, predictor, LOBE.box2d, (LOBE.z0, LOBE.z1))
    windowed = FramedPredictor(predictor, frame)
    box = predictor.box_to_model(LOBE.box2d)
    a, b = predictor.predict_model_box(11, box), windowed.predict_model_box(11, box)
    both = view.predict_model_box(11, box)
    np.testing.assert_allclose(both.low_res_logits, (a.low_res_logits + b.low_res_logits) / 2, atol=1e-6)
    np.testing.assert_array_equal(both.mask, logits_to_mask(both.low_res_logits, predictor.shape[1:]))
    assert both.iou == pytest.approx((a.iou + b.iou) / 2)
    assert not np.array_equal(both.mask, a.mask) or not np.array_equal(both.mask, b.mask)
    # three multimask outputs, each averaged alike
    outputs = view.predict_multimask(11, box)
    assert len(outputs) == 3
    np.testing.assert_allclose(outputs[0].low_res_logits,
                               (predictor.predict_multimask(11, box)[0].low_res_logits
                                + windowed.predict_multimask(11, box)[0].low_res_logits) / 2, atol=1e-6)
    # the sweep: the start slice is the ensemble's, and the other slices follow its masks
    mask = RefinementSession(predictor, LOBE, pipeline=ensemble).run()
    np.testing.assert_array_equal(mask[11], both.mask)
    assert all(mask[z].sum() > 300 for z in LOBE.z_range)


def test_window_ensemble_needs_views_of_the_same_part_of_the_slice(predictor):
    from LiteMedSAMLib.predictor import EnsembleView, Frame, FramedPredictor

    _, h, w = predictor.shape
    with pytest.raises(LiteMedSAMError, match="same part of the slice"):
        EnsembleView([predictor, FramedPredictor(predictor, Frame(0, 0, w // 2, h // 2))])
    with pytest.raises(LiteMedSAMError, match="at least two"):
        EnsembleView([predictor])


def _mirrored_predictor(model, volume):
    from LiteMedSAMLib.predictor import VolumePredictor

    mirrored = VolumePredictor(model)
    mirrored.set_volume(np.ascontiguousarray(volume[:, :, ::-1]), preset="mr")
    return mirrored


@pytest.mark.parametrize("width", [256, 128])  # square-ish, and a slice padded on its right
def test_flip_view_averages_with_the_mirrored_slice_mirrored_back(model, width):
    """Lever ``flip``: a prompt is also given to the slice mirrored left-right, and the logits
    are those of the plain slice averaged with the mirrored slice's mirrored back, exactly as
    if the user had mirrored the image and the box (one model pixel per slice pixel here, so
    the box needs no rounding)."""
    import torch

    from LiteMedSAMLib.predictor import FlipView, VolumePredictor
    from LiteMedSAMLib.preprocessing import logits_to_mask

    rng = np.random.default_rng(0)
    volume = rng.normal(0, 20, (2, 256, width)).astype(np.float32)
    volume[:, 60:140, 20:70] += 300.0
    volume[:, 90:120, 80:width - 10] += 150.0
    predictor = VolumePredictor(model)
    predictor.set_volume(volume, preset="mr")
    mirrored = _mirrored_predictor(model, volume)
    box = np.array([18.0, 58.0, 72.0, 142.0])
    points, labels = np.array([[40.0, 100.0]]), np.array([1])
    view = FlipView(predictor)
    both = view.predict_model_box(0, box, points, labels)
    plain = predictor.predict_model_box(0, box, points, labels)
    mirror_box = np.array([width - 1 - 72.0, 58.0, width - 1 - 18.0, 142.0])
    other = mirrored.predict_model_box(0, mirror_box, np.array([[width - 1 - 40.0, 100.0]]), labels)
    back = other.low_res_logits.clone()
    back[..., :width] = torch.flip(other.low_res_logits[..., :width], dims=[-1])
    np.testing.assert_allclose(both.low_res_logits, (plain.low_res_logits + back) / 2, atol=1e-5)
    np.testing.assert_array_equal(both.mask, logits_to_mask(both.low_res_logits, (256, width)))
    assert both.iou == pytest.approx((plain.iou + other.iou) / 2)
    assert predictor.encoder_runs == 2  # the slice and its mirror, each cached
    view.predict_model_box(0, box)
    assert predictor.encoder_runs == 2
    # a mask prompt is mirrored on the way in: feeding the mirrored slice's logits back in
    # through the view is the same as feeding them to the mirrored predictor directly
    again = view.predict_model_box(0, box, mask_input=both.low_res_logits)
    direct = mirrored.predict_model_box(0, mirror_box, mask_input=view._mirror_logits(both.low_res_logits))
    plain_again = predictor.predict_model_box(0, box, mask_input=both.low_res_logits)
    np.testing.assert_allclose(again.low_res_logits,
                               (plain_again.low_res_logits + view._mirror_logits(direct.low_res_logits)) / 2,
                               atol=1e-5)
    assert len(view.predict_multimask(0, box)) == 3


def test_the_flip_lever_sweeps_through_a_flip_view_of_the_chosen_frame(predictor):
    from LiteMedSAMLib.pipeline import get_pipeline, object_view
    from LiteMedSAMLib.predictor import FlipView

    flip = get_pipeline("default+flip")
    assert flip.flip and not get_pipeline("default").flip and not get_pipeline("official+flip").is_official
    view, _ = object_view(flip, predictor, LOBE.box2d, (LOBE.z0, LOBE.z1), 11)
    assert isinstance(view, FlipView)
    plain, _ = object_view(get_pipeline("default"), predictor, LOBE.box2d, (LOBE.z0, LOBE.z1), 11)
    assert getattr(view.view, "frame", None) == getattr(plain, "frame", None)  # the same choice
    box = view.box_to_model(LOBE.box2d)
    assert np.array_equal(box, plain.box_to_model(LOBE.box2d))
    assert view.predict_model_box(11, box).mask.sum() > 300


@pytest.mark.parametrize("pipeline", ["official", "default", "default+cropchoice"])
def test_one_box_costs_the_default_one_encoder_run_more_than_the_official(model, example, pipeline):
    """Speed (#11): a box alone, on a fresh predictor, encodes its slices once with the official
    pipeline and once more (the start slice under the window not kept) with the default,
    whichever window the choice keeps; the crop choice costs one more again (README,
    *Accuracy*; tools/encoded_slices_per_box.py)."""
    image, _, _ = example
    predictor = VolumePredictor(model)
    predictor.set_volume(image, preset="mr")
    mask = RefinementSession(predictor, LOBE, pipeline=pipeline).run()
    assert mask[LOBE.z0:LOBE.z1 + 1].any(axis=(1, 2)).all()
    extra = {"official": 0, "default": 1, "default+cropchoice": 2}[pipeline]
    assert predictor.encoder_runs == len(LOBE.z_range) + extra


def test_flip_with_the_ensemble_mirrors_each_window(predictor):
    """Levers combine: ``ensemble+flip`` averages both windows, each with its own mirror."""
    from LiteMedSAMLib.pipeline import get_pipeline, object_view
    from LiteMedSAMLib.predictor import EnsembleView, FlipView

    view, _ = object_view(get_pipeline("official+ensemble+flip"), predictor, LOBE.box2d, (LOBE.z0, LOBE.z1), 11)
    assert isinstance(view, EnsembleView) and all(isinstance(v, FlipView) for v in view.views)
    mappings = [v._mirrored.mapping for v in view.views]
    assert mappings[0] is None and mappings[1] is not None  # the volume's mapping, the box window
    box = predictor.box_to_model(LOBE.box2d)
    both = view.predict_model_box(11, box)
    parts = [v.predict_model_box(11, box) for v in view.views]
    np.testing.assert_allclose(both.low_res_logits, (parts[0].low_res_logits + parts[1].low_res_logits) / 2,
                               atol=1e-6)


def _interp_predictor(model, image, spacing):
    p = VolumePredictor(model)
    p.set_volume(image, preset="mr", slice_spacing=spacing)
    return p


def test_the_interp_lever_encodes_every_other_slice_on_thin_slices(model, example):
    """Lever ``interp``: on slices <= 1.5 mm apart the slices at an odd distance from the start
    slice, between two slices of the box, are decoded from their neighbours' mean embedding and
    never encoded; the sweep's ends are encoded whatever their parity."""
    from LiteMedSAMLib.predictor import InterpolatedView

    image, label, _ = example
    box = Box3D(14, 79, 8, 62, 130, 13)  # start slice 10: 9 and 11 interpolated, 13 (the end) not
    thin = _interp_predictor(model, image, 1.0)
    session = RefinementSession(thin, box, pipeline="official+interp")
    assert isinstance(session.predictor, InterpolatedView)
    mask = session.run()
    assert [z for z in box.z_range if session.predictor.interpolated(z)] == [9, 11]
    assert thin.encoder_runs == len(box.z_range) - 2
    assert not thin.is_encoded(9) and not thin.is_encoded(11) and thin.is_encoded(13)
    assert session.predictor.is_encoded(11)  # the view decodes it without an encoder run
    # an interpolated slice's mask is the decoder's for the mean of its neighbours' embeddings
    mean = 0.5 * (thin.embedding(10) + thin.embedding(12))
    by_hand = thin.predict_model_box(11, session.slice_box(11), embedding=mean)
    np.testing.assert_array_equal(mask[11], by_hand.mask)
    assert thin.encoder_runs == len(box.z_range) - 2  # nothing more encoded for that
    truth = (label == 1)[box.z0:box.z1 + 1]
    assert dice(mask[box.z0:box.z1 + 1], truth) > 0.6  # still the temporal lobe


@pytest.mark.parametrize("spacing", [None, 2.0])
def test_the_interp_lever_encodes_every_slice_where_slices_are_thick_or_unknown(model, example, spacing):
    from LiteMedSAMLib.pipeline import get_pipeline

    image, _, _ = example
    p = _interp_predictor(model, image, spacing)
    mask = RefinementSession(p, LOBE, pipeline="official+interp").run()
    assert p.encoder_runs == len(LOBE.z_range)
    (official,) = segment_volume(_interp_predictor(model, image, spacing), [LOBE], pipeline="official")
    np.testing.assert_array_equal(mask, official)
    interp = get_pipeline("official+interp")
    assert interp.interpolate and not interp.is_official and not interp.interpolates(spacing)
    assert interp.interpolates(1.5) and not get_pipeline("official").interpolates(1.0)


def test_the_interp_lever_leaves_2d_starts_alone(model, example):
    """From a 2D start the stop rule reads each slice's mask, and interpolated slices ended
    sweeps early (train split -0.033): a 2D start encodes every slice it sweeps, as without it."""
    from LiteMedSAMLib.boxes import SliceBox

    image, _, _ = example
    start = SliceBox(11, 14, 79, 62, 130, z_min=9, z_max=13)  # the lobe spans all five slices
    p = _interp_predictor(model, image, 1.0)
    session = RefinementSession(p, start, pipeline="official+interp")
    mask = session.run()
    assert not hasattr(session.predictor, "interpolated")
    assert mask[9:14].any(axis=(1, 2)).all() and p.encoder_runs == 5
    (plain,) = segment_volume(_interp_predictor(model, image, 1.0), [start], pipeline="official")
    np.testing.assert_array_equal(mask, plain)


def test_a_click_on_an_interpolated_slice_encodes_nothing(model, example):
    """Corrections decode an interpolated slice from the same mean embedding: no encoder run
    (a click is shown without one), and the click is followed."""
    image, _, _ = example
    p = _interp_predictor(model, image, 1.0)
    session = RefinementSession(p, LOBE, pipeline="official+interp", correction="edit")
    session.run()
    runs = p.encoder_runs
    assert session.predictor.interpolated(12)
    ys, xs = np.nonzero(session.slice_mask(12))
    changed = session.add_point(12, float(xs[len(xs) // 2]), float(ys[len(ys) // 2]), positive=False)
    assert 12 in changed and not session.slice_mask(12)[ys[len(ys) // 2], xs[len(xs) // 2]]
    assert p.encoder_runs == runs


def test_the_default_interpolates_thin_slices_only_for_boxes_4_embedding_cells_wide(model, example):
    """The default (lever ``interpsize``): on slices <= 1.5 mm apart a 3D box's sweep decodes
    every other slice from its neighbours' mean embedding where the box spans at least 16 model
    pixels (4 cells of the embedding grid) each way; a smaller object is encoded on every slice,
    since the mean of two embeddings blurs an object of a cell or two away (an INIA19 parcel of
    4 x 4 voxels lost 0.043 with ``interp``)."""
    from LiteMedSAMLib.pipeline import get_pipeline

    image, label, _ = example
    default = get_pipeline("default")
    assert default.interpolates(1.0, (0, 0, 16, 40)) and not default.interpolates(1.0, (0, 0, 15.5, 40))
    assert not default.interpolates(2.0, (0, 0, 100, 100))  # thick slices: every slice encoded
    assert get_pipeline("default+interp").interpolates(1.0, (0, 0, 4, 4))  # any size
    assert not get_pipeline("default+allslices").interpolates(1.0, (0, 0, 100, 100))

    small = Box3D(40, 100, 9, 46, 106, 13)  # 7 x 7 pixels of a 170-pixel slice: ~10 model pixels
    p = _interp_predictor(model, image, 1.0)
    assert not hasattr(RefinementSession(p, small, pipeline="default").predictor, "interpolated")

    p = _interp_predictor(model, image, 1.0)
    session = RefinementSession(p, LOBE, pipeline="default")
    mask = session.run()
    assert [z for z in LOBE.z_range if session.predictor.interpolated(z)] == [10, 12]
    assert not p.is_encoded(10) and not p.is_encoded(12) and p.is_encoded(13)
    (every,) = segment_volume(_interp_predictor(model, image, 1.0), [LOBE], pipeline="default+allslices")
    truth = (label == 1)[LOBE.z0:LOBE.z1 + 1]
    ours, theirs = (dice(m[LOBE.z0:LOBE.z1 + 1], truth) for m in (mask, every))
    assert ours > 0.6 and abs(ours - theirs) < 0.03  # the temporal lobe, as with every slice encoded


def test_a_script_that_leaves_out_the_slice_spacing_is_told_once_per_volume(model, example, caplog):
    """The default's thin-slice levers (the carry, the interpolation) need the volume's slice
    spacing; a script that calls ``set_volume`` without it gets neither, and a warning that says
    so, once per volume (the command line, batch runs and the Slicer module always pass it)."""
    import logging

    from LiteMedSAMLib.boxes import SliceBox
    from LiteMedSAMLib.pipeline import get_pipeline

    assert get_pipeline("default").needs_spacing() and not get_pipeline("default").needs_spacing(start_2d=True)
    assert not get_pipeline("official").needs_spacing(start_2d=False)
    assert not get_pipeline("default+carry+allslices").needs_spacing()  # carry at any spacing, no interpolation
    assert get_pipeline("default+carryspan").needs_spacing(start_2d=True)

    image, _, _ = example

    def warnings_for(predictor, box, pipeline="default"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="LiteMedSAMLib"):
            RefinementSession(predictor, box, pipeline=pipeline, corrections=False)
        return [r.getMessage() for r in caplog.records if "slice spacing is unknown" in r.getMessage()]

    p = VolumePredictor(model)
    p.set_volume(image, preset="mr")
    (message,) = warnings_for(p, LOBE)
    assert "pass slice_spacing (mm) to set_volume()" in message
    assert warnings_for(p, LOBE) == []  # once per volume
    assert warnings_for(p, SliceBox(11, 14, 79, 62, 130)) == []  # nothing of a 2D start needs it
    p.set_volume(image, preset="mr")  # a new volume: said again
    assert warnings_for(p, SliceBox(11, 14, 79, 62, 130)) == [] and len(warnings_for(p, LOBE)) == 1
    assert warnings_for(_interp_predictor(model, image, 1.0), LOBE) == []
