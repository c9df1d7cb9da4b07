"""Tests for LiteMedSAMLib.evaluation.metrics: DSC and NSD as the CVPR24 challenge computes them.

The expected NSD values are derived by hand below from the surfel areas of DeepMind's
algorithm (marching-cubes pieces on the voxel-corner lattice); they agree with DeepMind's
``surface_distance`` reference implementation (checked when this module was written).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from LiteMedSAMLib.errors import LiteMedSAMError
from LiteMedSAMLib.evaluation.metrics import (
    dice,
    normalized_surface_dice,
    per_label_metrics,
    surface_distances,
)


def _cube(shift: int = 0, axis: int = 2, shape=(30, 30, 30), low: int = 8, side: int = 10):
    """A ``side``-voxel cube in a ``[z, y, x]`` volume, shifted by ``shift`` along ``axis``."""
    mask = np.zeros(shape, bool)
    slices = [slice(low, low + side)] * 3
    slices[axis] = slice(low + shift, low + shift + side)
    mask[tuple(slices)] = True
    return mask


def _square(shift: int = 0, shape=(30, 30), low: int = 8, side: int = 10):
    mask = np.zeros(shape, np.uint8)
    mask[low:low + side, low + shift:low + shift + side] = 1
    return mask


# ---------------------------------------------------------------------------------------------
# Dice


def test_dice_values_and_conventions():
    a = np.zeros((4, 5, 6), bool)
    b = np.zeros((4, 5, 6), bool)
    assert dice(a, b) == 1.0  # both empty
    a[0, 0, :4] = True
    assert dice(a, b) == 0.0 and dice(b, a) == 0.0  # one empty
    b[0, 0, 2:6] = True  # overlap 2 voxels of 4 + 4
    assert dice(a, b) == pytest.approx(0.5)
    assert dice(a.astype(np.uint8) * 7, b.astype(np.int16)) == pytest.approx(0.5)  # non-zero = fg
    assert dice(a, a) == 1.0


def test_dice_shape_mismatch():
    with pytest.raises(LiteMedSAMError, match=r"differ in shape: \(3, 4\) vs \(4, 3\)"):
        dice(np.zeros((3, 4)), np.zeros((4, 3)))


# ---------------------------------------------------------------------------------------------
# NSD: conventions


def test_nsd_identical_masks_is_one():
    mask = _cube()
    assert normalized_surface_dice(mask, mask, (2.5, 0.8, 0.7)) == 1.0
    assert normalized_surface_dice(mask, mask, (1, 1, 1), tolerance_mm=0.0) == 1.0


def test_nsd_empty_conventions():
    empty = np.zeros((10, 10, 10), bool)
    mask = empty.copy()
    mask[2:5, 2:5, 2:5] = True
    assert normalized_surface_dice(empty, empty, (1, 1, 1)) == 1.0
    assert normalized_surface_dice(empty, mask, (1, 1, 1)) == 0.0
    assert normalized_surface_dice(mask, empty, (1, 1, 1)) == 0.0


def test_nsd_shift_by_one_voxel_within_tolerance():
    # Every surface point is at most 1 mm from the other surface: all within 2 mm.
    assert normalized_surface_dice(_cube(1), _cube(0), (1, 1, 1), 2.0) == pytest.approx(1.0)
    assert normalized_surface_dice(_cube(1, axis=0), _cube(0), (1, 1, 1), 2.0) == \
        pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------
# NSD: hand-computed values

# Surfel areas of DeepMind's table for a box surface, unit normals n scaled by the spacing:
# a face point carries one voxel face; an edge point two triangles with normal (1/4, 1/4, 0);
# a corner point one triangle with normal (1/8, 1/8, 1/8). Components are scaled by the
# products of the other two spacings.


def _face_area(spacing, normal_axis):
    others = [s for a, s in enumerate(spacing) if a != normal_axis]
    return others[0] * others[1]


def _edge_area(spacing, along_axis):
    a, b = [_face_area(spacing, axis) for axis in range(3) if axis != along_axis]
    return 0.5 * math.hypot(a, b)


def _corner_area(spacing):
    return 0.125 * math.sqrt(sum(_face_area(spacing, axis) ** 2 for axis in range(3)))


def test_nsd_cube_shifted_five_voxels_isotropic():
    """10-voxel cubes shifted 5 voxels along x, 1 mm voxels, tolerance 2 mm.

    On the lattice, the ground-truth box spans [0, 10]^3 and the prediction [5, 15] in x.
    Within 2 mm of the prediction's surface: on the face x=10, the 81 - 5*5 interior points
    within 2 of its rim; on the four side faces, the 7 * 9 points with x >= 3; on the 4 edges
    along x, 7 points each; the 4 edges and 4 corners at x=10 entirely. Nothing at x=0.
    The prediction's surface mirrors this, so NSD = within / total for one surface.
    """
    spacing = (1.0, 1.0, 1.0)
    face, edge, corner = 1.0, _edge_area(spacing, 0), _corner_area(spacing)
    assert edge == pytest.approx(math.sqrt(2) / 2) and corner == pytest.approx(math.sqrt(3) / 8)
    within = (81 - 25) * face + 4 * 63 * face + (4 * 7 + 4 * 9) * edge + 4 * corner
    total = 6 * 81 * face + 12 * 9 * edge + 8 * corner
    expected = within / total
    assert expected == pytest.approx(0.6277630226317956, abs=1e-12)  # DeepMind's result
    assert normalized_surface_dice(_cube(5), _cube(0), spacing, 2.0) == \
        pytest.approx(expected, abs=1e-12)
    # Symmetric in its arguments.
    assert normalized_surface_dice(_cube(0), _cube(5), spacing, 2.0) == \
        pytest.approx(expected, abs=1e-12)


def test_nsd_cube_shifted_along_z_anisotropic():
    """Spacing (z, y, x) = (2.5, 0.8, 0.7) mm; cubes shifted 2 slices (5 mm) along z.

    Within 2 mm: on the face z=10, points within 2 mm of the rim (y or x index <= 2 from
    it: 56 of 81); on the side faces the points with z >= 2 (8 * 9 per face; z=1 is 2.5 mm
    away); the 4 edges along z with z >= 2; the 4 edges and 4 corners at z=10. Nothing at z=0.
    """
    spacing = (2.5, 0.8, 0.7)
    fz, fy, fx = (_face_area(spacing, a) for a in range(3))
    ez, ey, ex = (_edge_area(spacing, a) for a in range(3))
    corner = _corner_area(spacing)
    within = (56 * fz + 2 * 72 * fy + 2 * 72 * fx + 4 * 8 * ez + 2 * 9 * ex + 2 * 9 * ey
              + 4 * corner)
    total = 2 * 81 * (fz + fy + fx) + 4 * 9 * (ez + ey + ex) + 8 * corner
    expected = within / total
    assert expected == pytest.approx(0.7939990777968507, abs=1e-12)  # DeepMind's result
    assert normalized_surface_dice(_cube(2, axis=0), _cube(0), spacing, 2.0) == \
        pytest.approx(expected, abs=1e-12)
    # The same shift in voxels along x is only 1.4 mm: everything within 2 mm.
    assert normalized_surface_dice(_cube(2, axis=2), _cube(0), spacing, 2.0) == \
        pytest.approx(1.0)
    # Spacing order matters: (x, y, z) given by mistake would move the 5 mm shift to 1.4 mm.
    assert normalized_surface_dice(_cube(2, axis=0), _cube(0), spacing[::-1], 2.0) == \
        pytest.approx(1.0)


def test_surface_distances_cube_shift():
    result = surface_distances(_cube(5), _cube(0), (1.0, 1.0, 1.0))
    assert result["distances_gt_to_pred"].max() == pytest.approx(5.0)
    assert result["distances_gt_to_pred"].min() == 0.0
    total_area = result["surfel_areas_gt"].sum()
    assert total_area == pytest.approx(6 * 81 + 12 * 9 * math.sqrt(2) / 2 + 8 * math.sqrt(3) / 8)
    assert result["surfel_areas_pred"].sum() == pytest.approx(total_area)


def test_surfel_area_of_a_ball_in_physical_space():
    """A 12 mm ball sampled with anisotropic voxels: the surfel areas add up to roughly
    4 pi r^2. DeepMind's table overestimates curved surfaces on coarse grids (+16 % here, +8 %
    with 1 mm voxels); the exact total is the reference implementation's."""
    spacing = (2.0, 0.8, 0.7)
    shape = (20, 40, 45)
    centre = [(n - 1) / 2 for n in shape]
    grid = np.indices(shape).astype(float)
    distance = np.sqrt(sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, spacing)))
    ball = distance <= 12.0
    area = surface_distances(ball, ball, spacing)["surfel_areas_gt"].sum()
    assert area == pytest.approx(4 * math.pi * 12.0 ** 2, rel=0.2)
    assert area == pytest.approx(2097.7986515675775, rel=1e-12)  # DeepMind's result


def test_nsd_2d_squares():
    """2D: a 10-pixel square shifted 5 pixels along x. Edge points weigh 1 mm, corners
    half a diagonal; within 2 mm are 4 of the 9 right-edge points, 7 of 9 on the top and on
    the bottom edge, and the 2 right corners: (4 + 14 + 2 d) / (36 + 4 d) = 1/2 exactly."""
    assert normalized_surface_dice(_square(5), _square(0), (1.0, 1.0), 2.0) == \
        pytest.approx(0.5, abs=1e-12)
    assert normalized_surface_dice(_square(1), _square(0), (1.0, 1.0), 2.0) == pytest.approx(1.0)
    # Anisotropic pixels (y, x) = (1, 3) mm, 1-pixel shift along x (3 mm). Vertical edge
    # points weigh 1 mm, horizontal ones 3 mm, corners half a diagonal. Within 2 mm: the top
    # and bottom rows (on the other square's rows), the right edge's 4 points within 2 mm of a
    # row end, and the 2 right corners. The left edge and corners are 3 mm away.
    spacing = (1.0, 3.0)
    corner = 0.5 * math.hypot(1.0, 3.0)
    within = 2 * 9 * 3.0 + 4 * 1.0 + 2 * corner
    total = 2 * 9 * 3.0 + 2 * 9 * 1.0 + 4 * corner
    assert normalized_surface_dice(_square(1), _square(0), spacing, 2.0) == \
        pytest.approx(within / total, abs=1e-12)


def test_nsd_input_errors():
    mask = _cube()
    with pytest.raises(LiteMedSAMError, match=r"spacing must be 3 positive numbers"):
        normalized_surface_dice(mask, mask, (1.0, 1.0))
    with pytest.raises(LiteMedSAMError, match=r"spacing must be 3 positive numbers"):
        normalized_surface_dice(mask, mask, (1.0, 0.0, 1.0))
    with pytest.raises(LiteMedSAMError, match=r"spacing must be 3 positive numbers"):
        normalized_surface_dice(mask, mask, ("a", 1, 1))
    with pytest.raises(LiteMedSAMError, match="tolerance must be a number >= 0"):
        normalized_surface_dice(mask, mask, (1, 1, 1), tolerance_mm=-1)
    with pytest.raises(LiteMedSAMError, match="tolerance must be a number >= 0"):
        normalized_surface_dice(mask, mask, (1, 1, 1), tolerance_mm="2")
    assert normalized_surface_dice(mask, mask, (1, 1, 1), tolerance_mm=np.float32(2)) == 1.0
    with pytest.raises(LiteMedSAMError, match="2D or 3D masks"):
        normalized_surface_dice(np.ones((2, 2, 2, 2)), np.ones((2, 2, 2, 2)), (1, 1, 1, 1))
    with pytest.raises(LiteMedSAMError, match="differ in shape"):
        normalized_surface_dice(mask, mask[:-1], (1, 1, 1))


# ---------------------------------------------------------------------------------------------
# Per-label metrics


def test_per_label_metrics():
    gt = np.zeros((30, 30, 30), np.uint8)
    pred = np.zeros_like(gt)
    gt[_cube(0)] = 1
    pred[_cube(5)] = 1
    gt[1:4, 1:4, 1:4] = 2  # label 2 missed by the prediction
    pred[25:28, 25:28, 25:28] = 3  # label 3 only in the prediction
    results = per_label_metrics(pred, gt, (1.0, 1.0, 1.0), 2.0)
    assert list(results) == [1, 2, 3]
    assert results[1]["dsc"] == pytest.approx(0.5)  # 500 of 1000 voxels overlap
    assert results[1]["nsd"] == pytest.approx(0.6277630226317956, abs=1e-12)
    assert results[2] == {"dsc": 0.0, "nsd": 0.0}
    assert results[3] == {"dsc": 0.0, "nsd": 0.0}
    # The challenge's selection: ground-truth labels only; an absent label scores 1.0 / 1.0.
    chosen = per_label_metrics(pred, gt, (1, 1, 1), labels=[1, 2, 4])
    assert list(chosen) == [1, 2, 4] and chosen[4] == {"dsc": 1.0, "nsd": 1.0}


def test_per_label_metrics_errors():
    with pytest.raises(LiteMedSAMError, match="integer dtype"):
        per_label_metrics(np.zeros((3, 3), float), np.zeros((3, 3), int), (1, 1))
    with pytest.raises(LiteMedSAMError, match="labelmaps differ in shape"):
        per_label_metrics(np.zeros((3, 3), int), np.zeros((3, 4), int), (1, 1))
