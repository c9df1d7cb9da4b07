"""The pipeline levers' pure pieces (#11): names and errors, the crop around a box, the box
window, and the stop rule's test of a propagated slice against its neighbour."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from LiteMedSAMLib.errors import LiteMedSAMError
from LiteMedSAMLib.pipeline import DEFAULT, OFFICIAL, box_fit, box_window, crop_rect, get_pipeline
from LiteMedSAMLib.refinement import object_ended


def test_names_levers_and_errors():
    assert get_pipeline("official") is OFFICIAL and OFFICIAL.is_official
    assert get_pipeline(None) is DEFAULT and not DEFAULT.is_official
    p = get_pipeline("official+window+stop")
    assert p.window and p.stop and not p.crop and p.stop_iou == 0 and p.stop_area == 0
    with pytest.raises(LiteMedSAMError, match="unknown pipeline"):
        get_pipeline("official+zoom")
    with pytest.raises(LiteMedSAMError, match="unknown pipeline"):
        get_pipeline("best+window")


def test_the_default_carries_on_thin_slices_only_and_the_lever_at_any_spacing():
    assert DEFAULT.carries(1.0) and DEFAULT.carries(1.5)
    assert not DEFAULT.carries(2.0) and not DEFAULT.carries(None)  # unknown spacing: as before
    assert not DEFAULT.carries(1.0, start_2d=True)
    assert not OFFICIAL.carries(0.5)
    lever = get_pipeline("default+carry")
    assert lever.window_choice and lever.carries(3.0) and lever.carries(None) and lever.carries(1.0, True)
    assert get_pipeline("official+carry").carries(5.0) and not get_pipeline("official+carry").is_official


def test_crop_is_a_square_around_the_box_moved_inside_the_slice():
    assert crop_rect((40, 40, 49, 59), (200, 300), margin=3.0, minimum=32) == (15, 20, 75, 80)
    x0, y0, x1, y1 = crop_rect((0, 0, 9, 9), (200, 300), margin=3.0, minimum=96)  # at the corner
    assert (x0, y0, x1 - x0, y1 - y0) == (0, 0, 96, 96)
    assert crop_rect((0, 0, 9, 9), (50, 300), margin=3.0, minimum=96)[3] == 50  # clipped


def test_box_window_stretches_the_regions_percentiles_and_skips_constant_regions():
    region = np.arange(1000.0)
    mapping = box_window(region, (0.5, 99.5))
    assert mapping.lower == pytest.approx(np.percentile(region, 0.5))
    out = mapping.apply(np.array([0.0, 500.0, 999.0]))
    assert out[0] == 0 and out[-1] == 255 and 120 < out[1] < 135
    assert box_window(np.full(10, 7.0), (0.5, 99.5)) is None


def test_box_fit_is_the_iou_of_the_masks_bounding_box_with_the_prompt_box():
    mask = np.zeros((40, 40), np.uint8)
    mask[10:20, 10:30] = 1  # bounding box x 10..29, y 10..19: 200 pixels
    assert box_fit(mask, (10, 10, 29, 19)) == 1.0
    assert box_fit(mask, (10, 10, 29, 29)) == pytest.approx(200 / 400)  # the mask fills half the box
    assert box_fit(mask, (0, 0, 4, 4)) == 0.0 and box_fit(np.zeros_like(mask), (10, 10, 29, 19)) == 0.0
    mask[35, 35] = 1  # a stray pixel stretches the bounding box: the fit says so
    assert box_fit(mask, (10, 10, 29, 19)) < 0.4


def _disc(cx, cy, r, shape=(64, 64)):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return ((xx - cx) ** 2 + (yy - cy) ** 2 <= r * r).astype(np.uint8)


def test_stop_rule_ends_on_a_sliver_or_a_jump_to_another_object_and_the_default_ends_on_jumps():
    previous = _disc(30, 30, 10)
    moved = _disc(48, 30, 10)  # same size, slid onto the next object: IoU about 0.03
    shifted = _disc(33, 30, 10)  # the same object, a little further: IoU about 0.68
    sliver = _disc(30, 30, 2)
    stop = get_pipeline("official+stop")  # the lever alone: only an empty mask ends the sweep
    assert not any(object_ended(m, previous, stop) for m in (moved, shifted, sliver))
    by_area = replace(stop, stop_area=0.1)
    assert object_ended(sliver, previous, by_area) and not object_ended(moved, previous, by_area)
    assert DEFAULT.stop_iou == 0.4  # measured on the suite's 2D starts (README)
    assert object_ended(moved, previous, DEFAULT) and not object_ended(shifted, previous, DEFAULT)
    assert object_ended(sliver, previous, DEFAULT)  # a shrink to a sliver is a low IoU too
    # the first slice after an empty neighbour has nothing to be compared with: it goes on
    assert not object_ended(moved, np.zeros_like(previous), replace(DEFAULT, stop_iou=0.4, stop_area=0.1))


def test_the_default_keeps_the_masks_inside_the_box_and_official_does_not():
    assert DEFAULT.bound and not get_pipeline("official").bound
    assert get_pipeline("official+bound").bound and not get_pipeline("official+bound").is_official


def test_levers_measured_and_not_adopted_are_named_and_off_in_the_default():
    """ensemble, carry2d, centred, pad, flip, meet, carryspan and cropchoice (README, *Accuracy* and
    *Interactive refinement*): each lost on the train split or on the test split."""
    assert not (DEFAULT.window_ensemble or DEFAULT.carry_stop_check or DEFAULT.window_centred_ct)
    ensemble = get_pipeline("default+ensemble")
    assert ensemble.window_ensemble and not ensemble.window_choice and ensemble.carry
    carry2d = get_pipeline("default+carry2d")
    assert carry2d.carry_stop_check and carry2d.carries(1.0, start_2d=True)
    assert not carry2d.carries(2.0, start_2d=True)  # the default's spacing limit stays
    assert get_pipeline("default+centred").window_centred_ct
    assert get_pipeline("official+centred").window and not get_pipeline("official+centred").is_official
    assert DEFAULT.box_margin == 0 and get_pipeline("default+pad").box_margin == 2
    assert not get_pipeline("official+pad").is_official
    assert not (DEFAULT.meet or DEFAULT.carry_2d_span or DEFAULT.crop or DEFAULT.crop_choice)
    assert get_pipeline("default+meet").meet and get_pipeline("default+cropchoice").crop_choice
    span = get_pipeline("default+carryspan")
    assert span.carry_2d_span and not span.carries(1.0, start_2d=True) and span.carries(1.0)
    assert not get_pipeline("official+carryspan").carries(1.0, start_2d=True)  # the span, not carry2d


def test_a_padded_box_grows_by_model_pixels_and_stays_on_the_slice():
    from LiteMedSAMLib.pipeline import padded_box2d

    # 512 pixels: a model pixel is 2 slice pixels
    assert padded_box2d((100, 200, 150, 260), (512, 400), 2.0) == (96, 196, 154, 264)
    assert padded_box2d((1, 2, 395, 509), (512, 400), 2.0) == (0, 0, 399, 511)
    assert padded_box2d((10, 10, 20, 20), (256, 256), 0.0) == (10, 10, 20, 20)


def test_the_pad_lever_prompts_the_start_slice_with_the_looser_box(model):
    from LiteMedSAMLib.predictor import VolumePredictor
    from LiteMedSAMLib.refinement import RefinementSession

    volume = np.zeros((3, 128, 128), np.float32)
    volume[:, 40:80, 50:90] = 200.0
    predictor = VolumePredictor(model)
    predictor.set_volume(volume, preset="mr")
    padded = RefinementSession(predictor, (50, 40, 0, 89, 79, 2), pipeline="official+pad")
    assert padded.box.box2d == (49, 39, 90, 80)  # 2 model pixels = 1 slice pixel here
    assert padded.box.z0 == 0 and padded.box.z1 == 2  # the slice range stays
    padded.run()
    assert np.array_equal(padded.slice_box(1), predictor.box_to_model((49, 39, 90, 80)))


def test_centred_window_keeps_the_width_and_centres_on_the_median():
    from LiteMedSAMLib.pipeline import centred_window

    mapping = centred_window(np.array([50.0, 60.0, 70.0, 1000.0]), 400.0)
    assert (mapping.lower, mapping.upper) == (-135.0, 265.0)  # median 65
    assert mapping.apply(np.array([65.0]))[0] == 127
    assert centred_window(np.array([]), 400.0) is None


def test_the_centred_lever_windows_ct_boxes_on_their_centre_and_leaves_mr_alone(model):
    from LiteMedSAMLib.pipeline import frame_for_box
    from LiteMedSAMLib.predictor import VolumePredictor

    ct = np.full((3, 64, 64), -1000.0, np.float32)
    ct[:, 20:44, 20:44] = 40.0  # soft tissue around
    ct[:, 28:36, 28:36] = 300.0  # a contrast-filled vessel at the box's centre
    predictor = VolumePredictor(model)
    predictor.set_volume(ct, preset="ct")  # nothing is encoded: the frame needs raw voxels only
    box = (24, 24, 39, 39)  # its central half is 28..35: the vessel
    frame = frame_for_box(get_pipeline("official+centred"), predictor, box, (0, 2))
    assert (frame.mapping.lower, frame.mapping.upper) == (100.0, 500.0)
    percentiles = frame_for_box(get_pipeline("official+window"), predictor, box, (0, 2))
    assert (percentiles.mapping.lower, percentiles.mapping.upper) == (40.0, 300.0)
    predictor.set_volume(ct + 1000.0, preset="mr")  # not CT: the box's percentiles as before
    mr = frame_for_box(get_pipeline("official+centred"), predictor, box, (0, 2))
    assert mr.mapping.upper == 1300.0 and mr.mapping.lower == 1040.0


def test_the_noair_lever_leaves_air_out_of_a_ct_box_window_unless_the_box_is_mostly_air(model):
    from LiteMedSAMLib.pipeline import frame_for_box, without_air
    from LiteMedSAMLib.predictor import VolumePredictor

    values = np.array([-1000.0] * 3 + [-100.0, 40.0, 60.0])
    assert sorted(without_air(values)) == [-100.0, 40.0, 60.0]
    mostly_air = np.array([-1000.0] * 4 + [40.0, 60.0])  # a lung: air is what the box is about
    assert np.array_equal(without_air(mostly_air), mostly_air)

    ct = np.full((3, 64, 64), -1000.0, np.float32)  # air: outside the body, the lung base
    ct[:, 16:64, 16:64] = -100.0                    # fat
    ct[:, 24:40, 24:40] = 50.0                      # an organ
    predictor = VolumePredictor(model)
    predictor.set_volume(ct, preset="ct")  # nothing is encoded: the frame needs raw voxels only
    box = (20, 20, 43, 43)  # its ring reaches the air
    stretched = frame_for_box(get_pipeline("official+window"), predictor, box, (0, 2))
    assert stretched.mapping.lower == -1000.0   # the air sets the window's floor
    tissue = frame_for_box(get_pipeline("official+noair"), predictor, box, (0, 2))
    assert (tissue.mapping.lower, tissue.mapping.upper) == (-100.0, 50.0)
    assert tissue.mapping.apply(np.array([50.0]))[0] == 255 and tissue.mapping.apply(np.array([-100.0]))[0] == 0
    predictor.set_volume(ct + 1000.0, preset="mr")  # not CT: the region's percentiles as before
    mr = frame_for_box(get_pipeline("official+noair"), predictor, box, (0, 2))
    assert mr.mapping.lower == 0.0


def test_the_drift_rule_ends_a_2d_sweep_where_the_mask_slides_onto_another_brightness(model):
    """Lever ``drift``: where the sweep stops (2D starts), it ends at the first slice whose
    mask's mean raw value is more than ``stop_drift`` standard deviations (of the start slice's
    mask) from the start slice's: an "object" of three slices, then a neighbour of the same
    shape and another brightness, which the sweep otherwise runs on into. From a 3D box (which
    the default does not stop) nothing changes."""
    from dataclasses import replace

    from LiteMedSAMLib.boxes import Box3D, SliceBox
    from LiteMedSAMLib.pipeline import intensity_drift, intensity_reference
    from LiteMedSAMLib.predictor import VolumePredictor
    from LiteMedSAMLib.refinement import RefinementSession

    raw, mask = np.array([[10.0, 14.0], [12.0, 0.0]]), np.array([[1, 1], [1, 0]])
    reference = intensity_reference(raw, mask)
    assert reference == pytest.approx((12.0, np.std([10.0, 14.0, 12.0])))
    assert intensity_drift(raw + 2 * reference[1], mask, reference) == pytest.approx(2.0)
    assert intensity_drift(raw, np.zeros((2, 2)), reference) == 0.0
    assert intensity_reference(np.full((2, 2), 5.0), mask) is None  # uniform: nothing to measure against
    assert get_pipeline("default+drift").stop_drift == 2.0 and DEFAULT.stop_drift == 0.0
    assert not get_pipeline("official+drift").is_official
    texture = 20.0 * (np.indices((96, 96)).sum(axis=0) % 2)      # a fine checkerboard: a std of 10
    volume = np.repeat((100.0 + texture)[None], 7, axis=0).astype(np.float32)
    volume[:, 28:68, 28:68] += 500.0                               # the object ...
    volume[3:, 28:68, 28:68] -= 250.0                              # ... and a dimmer neighbour above
    start = SliceBox(1, 26, 26, 69, 69)
    predictor = VolumePredictor(model)
    predictor.set_volume(volume, preset="mr")
    plain = RefinementSession(predictor, start, pipeline=DEFAULT).run()
    assert plain[3].any()  # the sweep ran on into the neighbour
    drift = get_pipeline("default+drift")
    ended = RefinementSession(predictor, start, pipeline=drift).run()
    assert not ended[3:].any()
    np.testing.assert_array_equal(ended[:3], plain[:3])
    assert all(ended[z].sum() > 800 for z in range(3))  # the object itself is kept
    loose = RefinementSession(predictor, start, pipeline=replace(drift, stop_drift=100.0)).run()
    np.testing.assert_array_equal(loose, plain)  # a drift of 25 standard deviations is under 100
    box = Box3D(26, 26, 0, 69, 69, 6)
    np.testing.assert_array_equal(RefinementSession(predictor, box, pipeline=drift).run(),
                                  RefinementSession(predictor, box, pipeline=DEFAULT).run())


def test_the_leak_rule_needs_a_narrowing_a_regrowth_and_another_brightness():
    """The shape half of lever ``leak``: a mask more than 1.2 times the narrowest between it and
    the start slice, once that narrowest fell below 0.7 of the start slice's area."""
    from LiteMedSAMLib.pipeline import leak_shape

    leak = get_pipeline("default+leak")
    assert (leak.stop_leak_narrowed, leak.stop_leak_regrown, leak.stop_leak_drift) == (0.7, 1.2, 1.0)
    assert not get_pipeline("official+leak").is_official
    assert leak_shape(area=500, narrowest=400, start_area=1600, pipeline=leak)      # narrowed, regrown
    assert not leak_shape(area=480, narrowest=400, start_area=1600, pipeline=leak)  # not past 1.2x
    assert not leak_shape(area=1500, narrowest=1200, start_area=1600, pipeline=leak)  # never narrowed
    assert not leak_shape(area=0, narrowest=0, start_area=1600, pipeline=leak)
    assert not leak_shape(area=500, narrowest=400, start_area=1600, pipeline=DEFAULT)  # off


def test_the_leak_rule_ends_a_2d_sweep_that_narrowed_then_grew_into_another_brightness(model):
    """Lever ``leak``: an "object" 40 pixels across on its first two slices, 26 on the third,
    under a neighbour 30 across: the sweep ends where the mask grows again with another
    brightness, not where it only grows (the same brightness: the object widening again). From
    a 3D box (which the default does not stop) nothing changes."""
    from LiteMedSAMLib.boxes import Box3D, SliceBox
    from LiteMedSAMLib.predictor import VolumePredictor
    from LiteMedSAMLib.refinement import RefinementSession

    def volume(neighbour_gain: float) -> np.ndarray:
        texture = 20.0 * (np.indices((96, 96)).sum(axis=0) % 2)  # a fine checkerboard: a std of 10
        v = np.repeat((100.0 + texture)[None], 6, axis=0).astype(np.float32)
        v[:2, 28:68, 28:68] += 500.0   # the object, 40 x 40 on its first two slices ...
        v[2, 35:61, 35:61] += 500.0    # ... tapering to 26 x 26 ...
        v[3:, 33:63, 33:63] += neighbour_gain  # ... under a neighbour 30 x 30
        return v

    start = SliceBox(1, 26, 26, 69, 69)
    leak = get_pipeline("default+leak")
    predictor = VolumePredictor(model)
    predictor.set_volume(volume(250.0), preset="mr")  # a dimmer neighbour
    plain = RefinementSession(predictor, start, pipeline=DEFAULT).run()
    areas = plain.reshape(6, -1).sum(axis=1)
    assert areas[2] < 0.7 * areas[1] and areas[4] > 1.2 * areas[2:4].min()  # narrowed, then regrown
    ended = RefinementSession(predictor, start, pipeline=leak).run()
    assert not ended[4:].any()
    np.testing.assert_array_equal(ended[:4], plain[:4])  # the slice not yet grown by 1.2x is kept
    box = Box3D(26, 26, 0, 69, 69, 5)
    np.testing.assert_array_equal(RefinementSession(predictor, box, pipeline=leak).run(),
                                  RefinementSession(predictor, box, pipeline=DEFAULT).run())
    predictor.set_volume(volume(500.0), preset="mr")  # as bright as the object: it widens again
    same = RefinementSession(predictor, start, pipeline=DEFAULT).run()
    assert same[4].sum() > 1.2 * same[2].sum()
    np.testing.assert_array_equal(RefinementSession(predictor, start, pipeline=leak).run(), same)


def test_the_bone_rule_ends_a_bony_objects_2d_sweep_at_the_disc(model):
    """Lever ``boneend``, in the default: on CT a 2D start on a bone (a quarter or more of its
    start mask at or above 150 HU) ends where the mask holds almost no bone: a "vertebra" of
    three slices, a "disc" of the same shape in soft tissue, then the next "vertebra". Without
    the rule the sweep runs on through the disc; on MR, from a soft-tissue object, or from a 3D
    box (which the default does not stop) nothing changes."""
    from dataclasses import replace

    from LiteMedSAMLib.boxes import Box3D, SliceBox
    from LiteMedSAMLib.pipeline import BONE_HU, bone_share
    from LiteMedSAMLib.predictor import VolumePredictor
    from LiteMedSAMLib.refinement import RefinementSession

    assert bone_share(np.array([[100.0, 200.0], [150.0, -50.0]]), np.array([[1, 1], [1, 0]])) == 2 / 3
    assert bone_share(np.zeros((2, 2)), np.zeros((2, 2))) == 0.0
    assert DEFAULT.stop_bone_hu == BONE_HU == get_pipeline("official+boneend").stop_bone_hu
    assert not get_pipeline("official+boneend").is_official
    ct = np.full((7, 96, 96), -100.0, np.float32)  # fat
    ct[:, 28:68, 28:68] = 600.0                     # vertebrae ...
    ct[3, 28:68, 28:68] = 90.0                      # ... and the disc between them
    start = SliceBox(1, 26, 26, 69, 69)
    predictor = VolumePredictor(model)
    predictor.set_volume(ct, preset="ct")
    without = replace(DEFAULT, stop_bone_hu=None)
    plain = RefinementSession(predictor, start, pipeline=without).run()
    assert plain[4:].any() and plain[3].any()  # the sweep ran through the disc
    ended = RefinementSession(predictor, start, pipeline=DEFAULT).run()
    assert not ended[3:].any()
    np.testing.assert_array_equal(ended[:3], plain[:3])
    assert all(ended[z].sum() > 800 for z in range(3))  # the vertebra itself is kept
    soft = RefinementSession(predictor, start, pipeline=replace(DEFAULT, stop_bone_hu=1000.0)).run()
    np.testing.assert_array_equal(soft, plain)  # no bone at its start: no bone rule
    box = Box3D(26, 26, 0, 69, 69, 6)
    np.testing.assert_array_equal(RefinementSession(predictor, box, pipeline=DEFAULT).run(),
                                  RefinementSession(predictor, box, pipeline=without).run())
    predictor.set_volume(ct + 1000.0, preset="mr")  # not CT: no bone rule
    mr_plain = RefinementSession(predictor, start, pipeline=without).run()
    np.testing.assert_array_equal(RefinementSession(predictor, start, pipeline=DEFAULT).run(), mr_plain)
