"""The official pre/post-processing: intensity mapping, resize, pad, box and mask transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from LiteMedSAMLib.errors import LiteMedSAMError
from LiteMedSAMLib.evaluation.reference import official_preprocess_ct, official_preprocess_mr
from LiteMedSAMLib.preprocessing import (
    CT_WINDOWS,
    box_from_mask_model,
    box_to_model,
    intensity_mapping,
    logits_to_mask,
    pad_to_square,
    prepare_slice,
    resize_longest_side,
    resized_shape,
    resolve_preset,
)


def _ct_volume(seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(-1024, 1500, size=(4, 40, 50)).astype(np.int16)


def test_ct_window_matches_official_slice_by_slice():
    volume = _ct_volume()
    mapping = intensity_mapping(volume, "ct")
    expected = official_preprocess_ct(volume, 400, 40)
    got = np.stack([mapping.apply(s) for s in volume])
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.uint8 and got.min() == 0 and got.max() == 255


@pytest.mark.parametrize("preset", ["ct-lung", "ct-bone", "ct-brain"])
def test_named_windows(preset):
    volume = _ct_volume(1)
    width, level = CT_WINDOWS[preset]
    np.testing.assert_array_equal(intensity_mapping(volume, preset).apply(volume),
                                  official_preprocess_ct(volume, width, level))


def test_custom_window():
    volume = _ct_volume(2)
    np.testing.assert_array_equal(intensity_mapping(volume, window=(350, 50)).apply(volume),
                                  official_preprocess_ct(volume, 350, 50))
    with pytest.raises(LiteMedSAMError, match="window width must be positive"):
        intensity_mapping(volume, window=(0, 50))


def test_mr_percentile_matches_official_and_keeps_zeros(example):
    image, _, _ = example
    mapping = intensity_mapping(image, "mr")
    np.testing.assert_array_equal(mapping.apply(image), official_preprocess_mr(image))
    float_volume = image.astype(np.float32) * 3.7 + 0.25
    float_volume[image == 0] = 0
    np.testing.assert_array_equal(intensity_mapping(float_volume, "mr").apply(float_volume),
                                  official_preprocess_mr(float_volume))
    assert (mapping.apply(image)[image == 0] == 0).all()


def test_auto_preset():
    assert resolve_preset(_ct_volume()) == "ct"
    assert resolve_preset(np.arange(100, dtype=np.float32).reshape(10, 10)) == "mr"
    assert resolve_preset(np.zeros((3, 4, 4), np.uint8)) == "none"


def test_bad_presets():
    with pytest.raises(LiteMedSAMError, match="unknown intensity preset 'ct-liver'"):
        intensity_mapping(_ct_volume(), "ct-liver")
    with pytest.raises(LiteMedSAMError, match="no positive voxels"):
        intensity_mapping(-np.ones((2, 5, 5)), "mr")
    with pytest.raises(LiteMedSAMError, match="already scaled to 0-255"):
        intensity_mapping(_ct_volume(), "none")


def test_constant_image_maps_to_black_not_nan():
    out = intensity_mapping(np.full((2, 8, 8), 7.0), "ct").apply(np.full((8, 8), 7.0))
    assert out.dtype == np.uint8 and not out.any()


def test_resize_pad_and_prepare_shapes():
    assert resized_shape(512, 512) == (256, 256)
    assert resized_shape(233, 197) == (256, 216)  # int(197 * 256 / 233 + 0.5)
    img = np.full((100, 50), 200, np.uint8)
    assert resize_longest_side(img).shape == (256, 128)
    assert pad_to_square(resize_longest_side(img)).shape == (256, 256)
    x = prepare_slice(np.tile(np.arange(50, dtype=np.uint8), (100, 1)))
    assert x.shape == (1, 3, 256, 256) and x.dtype == torch.float32
    assert float(x.max()) == 1.0 and float(x.min()) == 0.0
    assert not x[..., 128:].any()  # padding on the right is zero
    rgb = np.zeros((30, 60, 3), np.uint8)
    rgb[..., 0] = 255
    x = prepare_slice(rgb)
    assert x[0, 0, :128].min() == 1.0 and x[0, 1].max() == 0.0  # channels kept apart


def test_box_scaling_truncates_like_official():
    np.testing.assert_array_equal(box_to_model((10, 21, 100, 199), (200, 300)),
                                  [int(10 * 256 / 300), int(21 * 256 / 300),
                                   int(100 * 256 / 300), int(199 * 256 / 300)])


def test_box_from_previous_mask():
    mask = np.zeros((512, 512), np.uint8)
    mask[100:200, 300:400] = 1
    box = box_from_mask_model(mask)
    np.testing.assert_array_equal(box, [150 - 3, 50 - 3, 199 + 3, 99 + 3])
    assert box_from_mask_model(np.zeros((512, 512), np.uint8)) is None
    edge = np.zeros((256, 256), np.uint8)
    edge[0:10, 250:256] = 1
    np.testing.assert_array_equal(box_from_mask_model(edge), [247, 0, 256, 12])


def test_logits_to_mask_crops_and_resizes():
    logits = torch.full((1, 1, 256, 256), -10.0)
    logits[..., :64, :128] = 10.0  # top-left quarter of the resized (128 x 256) area
    mask = logits_to_mask(logits, (50, 100))
    assert mask.shape == (50, 100) and mask.dtype == np.uint8
    assert mask[:25, :50].all() and not mask[26:].any() and not mask[:, 51:].any()
