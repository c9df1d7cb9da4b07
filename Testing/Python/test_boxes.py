"""Tests for LiteMedSAMLib.boxes: voxel boxes, validation, physical boxes and Slicer ROI files."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import SimpleITK as sitk

from LiteMedSAMLib.boxes import (
    Box3D,
    box2d_from_mask,
    box_from_index_corners,
    box_from_physical_corners,
    box_from_physical_extent,
    check_box,
    check_box2d,
    read_roi_file,
)
from LiteMedSAMLib.errors import LiteMedSAMError


def _oblique_image(size_xyz=(40, 30, 20), spacing=(0.7, 0.8, 2.5), origin=(-50.0, 20.0, 10.5),
                   degrees=30.0) -> sitk.Image:
    """A zero image rotated ``degrees`` about the z axis, with anisotropic spacing."""
    image = sitk.Image(list(size_xyz), sitk.sitkInt16)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    image.SetDirection([c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0])
    return image


# ---------------------------------------------------------------------------------------------
# Box3D


def test_box3d_accessors():
    box = Box3D(2, 3, 4, 10, 11, 12)
    assert box.as_tuple() == (2, 3, 4, 10, 11, 12)
    assert box.box2d == (2, 3, 10, 11)
    assert box.z_range == range(4, 13)
    assert list(box.z_range)[-1] == 12  # inclusive


def test_box3d_accepts_integral_numbers_and_stores_ints():
    box = Box3D(np.int64(1), 2.0, np.float32(3.0), 4, 5, 6)
    assert box.as_tuple() == (1, 2, 3, 4, 5, 6)
    assert all(type(v) is int for v in box.as_tuple())


@pytest.mark.parametrize("bad", [2.5, float("nan"), "3", True])
def test_box3d_rejects_non_integral(bad):
    with pytest.raises(LiteMedSAMError, match="integer voxel index"):
        Box3D(bad, 0, 0, 1, 1, 1)


def test_box_from_mask_is_tight_and_inclusive():
    mask = np.zeros((20, 30, 40), np.uint8)  # [z, y, x]
    mask[5:9, 10:13, 20:31] = 1
    mask[7, 15, 35] = 1
    box = Box3D.from_mask(mask)
    assert box == Box3D(20, 10, 5, 35, 15, 8)
    # Same as the challenge's np.where derivation.
    zs, ys, xs = np.where(mask > 0)
    assert box.as_tuple() == (xs.min(), ys.min(), zs.min(), xs.max(), ys.max(), zs.max())
    # The box crops out every foreground voxel.
    crop = mask[box.z0:box.z1 + 1, box.y0:box.y1 + 1, box.x0:box.x1 + 1]
    assert crop.sum() == mask.sum()


def test_box_from_mask_errors():
    with pytest.raises(LiteMedSAMError, match="empty mask"):
        Box3D.from_mask(np.zeros((3, 4, 5), bool))
    with pytest.raises(LiteMedSAMError, match="3D"):
        Box3D.from_mask(np.ones((4, 5), bool))


def test_box2d_from_mask():
    mask = np.zeros((30, 40), bool)
    mask[3:7, 12:20] = True
    assert box2d_from_mask(mask) == (12, 3, 19, 6)
    with pytest.raises(LiteMedSAMError, match="empty"):
        box2d_from_mask(np.zeros((3, 3)))


# ---------------------------------------------------------------------------------------------
# check_box / check_box2d


def test_check_box_inside_is_unchanged():
    box, warnings = check_box([0, 0, 0, 39, 29, 19], (20, 30, 40))
    assert box == Box3D(0, 0, 0, 39, 29, 19)
    assert warnings == []


def test_check_box_accepts_box3d_and_integral_floats():
    box, warnings = check_box(Box3D(1, 2, 3, 4, 5, 6), (10, 10, 10))
    assert box.as_tuple() == (1, 2, 3, 4, 5, 6) and warnings == []
    box, _ = check_box(np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), (10, 10, 10))
    assert box.as_tuple() == (1, 2, 3, 4, 5, 6)


def test_check_box_clips_partly_outside_with_warning():
    box, warnings = check_box((-5, 10, 18, 45, 12, 25), (20, 30, 40), name="box 2")
    assert box == Box3D(0, 10, 18, 39, 12, 19)
    assert len(warnings) == 1
    assert "box 2" in warnings[0] and "clipped" in warnings[0]
    assert "x0=0, x1=39" in warnings[0] and "z0=18, z1=19" in warnings[0]


def test_check_box_inverted_names_axis():
    with pytest.raises(LiteMedSAMError, match=r"inverted along y\b"):
        check_box((1, 9, 1, 5, 3, 5), (10, 10, 10))
    with pytest.raises(LiteMedSAMError, match="inverted along x and z"):
        check_box((6, 1, 6, 5, 3, 5), (10, 10, 10))


def test_check_box_entirely_outside_names_image_size():
    with pytest.raises(LiteMedSAMError, match=r"entirely outside.*x=40 x y=30 x z=20"):
        check_box((50, 0, 0, 60, 5, 5), (20, 30, 40))
    with pytest.raises(LiteMedSAMError, match="entirely outside the image along z"):
        check_box((0, 0, -10, 5, 5, -1), (20, 30, 40))


def test_check_box_rejects_wrong_length_and_fractions():
    with pytest.raises(LiteMedSAMError, match="must have 6 numbers"):
        check_box((1, 2, 3, 4), (10, 10, 10))
    with pytest.raises(LiteMedSAMError, match="box x1 must be an integer"):
        check_box((1, 2, 3, 4.5, 5, 6), (10, 10, 10))
    with pytest.raises(LiteMedSAMError, match="sequence"):
        check_box("1,2,3,4,5,6", (10, 10, 10))
    with pytest.raises(LiteMedSAMError, match="image_shape_zyx"):
        check_box((1, 2, 3, 4, 5, 6), (10, 0, 10))


def test_check_box2d_same_rules():
    assert check_box2d((2, 3, 8, 9), (20, 10)) == ((2, 3, 8, 9), [])
    box, warnings = check_box2d((-3, 3, 8, 25), (20, 10))  # image 10 wide, 20 tall
    assert box == (0, 3, 8, 19)
    assert "clipped to x0=0, x1=8, y0=3, y1=19" in warnings[0]
    with pytest.raises(LiteMedSAMError, match="inverted along x"):
        check_box2d((8, 3, 2, 9), (20, 10))
    with pytest.raises(LiteMedSAMError, match=r"entirely outside.*x=10 x y=20"):
        check_box2d((10, 0, 12, 5), (20, 10))
    with pytest.raises(LiteMedSAMError, match="must have 4 numbers"):
        check_box2d((1, 2, 3, 4, 5, 6), (20, 10))


# ---------------------------------------------------------------------------------------------
# Physical boxes


def test_index_corners_include_voxel_centres_inside():
    # Faces through centres 10 and 14 include both; faces on cell boundaries 9.5 / 14.5 too.
    assert box_from_index_corners(np.array([[10, 2, 3], [14, 5, 3]])) == (10, 2, 3, 14, 5, 3)
    assert box_from_index_corners(np.array([[9.5, 1.5, 2.5], [14.5, 5.5, 3.5]])) == \
        (10, 2, 3, 14, 5, 3)
    # Faces between centres round inwards.
    assert box_from_index_corners(np.array([[9.7, 0, 0], [14.2, 1, 1]]))[::3] == (10, 14)
    # Rounding noise around a centre does not drop it.
    assert box_from_index_corners(np.array([[10.0000004, 0, 0], [13.9999996, 0, 0]]))[::3] == \
        (10, 14)
    # Negative indices are returned unclipped (check_box clips).
    assert box_from_index_corners(np.array([[-3.2, 0, 0], [2, 0, 0]]))[::3] == (-3, 2)


def test_index_corners_thinner_than_a_voxel():
    with pytest.raises(LiteMedSAMError, match="thinner than one voxel along y"):
        box_from_index_corners(np.array([[1, 3.2, 1], [5, 3.8, 4]]))
    with pytest.raises(LiteMedSAMError, match=r"\(N, 3\)"):
        box_from_index_corners(np.zeros((4, 2)))
    with pytest.raises(LiteMedSAMError, match="NaN"):
        box_from_index_corners(np.array([[np.nan, 0, 0]]))


def test_physical_extent_on_oblique_image_matches_voxel_centres():
    image = _oblique_image(degrees=0.0)
    # Centres of voxels 5 and 12 along x; a margin of a quarter voxel on y and z.
    low = image.TransformIndexToPhysicalPoint((5, 3, 2))
    high = image.TransformIndexToPhysicalPoint((12, 9, 6))
    box = box_from_physical_extent(np.array(low) - [0, 0.2, 0.6], np.array(high) + [0, 0.2, 0.6],
                                   image)
    assert box == Box3D(5, 3, 2, 12, 9, 6)


def test_physical_corners_oblique_brute_force():
    """Every voxel whose centre is inside the corners' index-space hull, and no other."""
    image = _oblique_image()
    centre = np.array(image.TransformContinuousIndexToPhysicalPoint((20.3, 14.6, 9.2)))
    # An LPS-axis-aligned 12 x 9 x 10 mm box: oblique in the image's index space.
    signs = np.array(list(itertools.product((-1, 1), repeat=3)))
    corners = centre + signs * [6.0, 4.5, 5.0]
    box = box_from_physical_corners(corners, image)
    indices = np.array([image.TransformPhysicalPointToContinuousIndex(p) for p in corners])
    lo, hi = indices.min(0), indices.max(0)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in image.GetSize()], indexing="ij"), -1)
    inside = np.all((grid >= lo - 1e-3) & (grid <= hi + 1e-3), axis=-1)
    ii, jj, kk = np.nonzero(inside)
    assert box.as_tuple() == (ii.min(), jj.min(), kk.min(), ii.max(), jj.max(), kk.max())
    # Cross-check against the same extent given as min/max.
    assert box_from_physical_extent(corners.min(0), corners.max(0), image) == box


def test_physical_box_errors():
    image = _oblique_image()
    with pytest.raises(LiteMedSAMError, match="inverted along P"):
        box_from_physical_extent((0, 5, 0), (1, 1, 1), image)
    with pytest.raises(LiteMedSAMError, match="3D image"):
        box_from_physical_corners(np.zeros((8, 3)), sitk.Image([10, 10], sitk.sitkUInt8))
    with pytest.raises(LiteMedSAMError, match="thinner than one voxel along z"):
        centre = np.array(image.TransformContinuousIndexToPhysicalPoint((20, 14, 9.3)))
        box_from_physical_extent(centre - [5, 5, 0.2], centre + [5, 5, 0.2], image)


# ---------------------------------------------------------------------------------------------
# Slicer ROI files


def _roi_json(path, markups):
    path.write_text(json.dumps({"@schema": "markups-schema-v1.0.3.json#", "markups": markups}))
    return path


def test_read_roi_hand_written_lps_and_ras(tmp_path):
    axis_aligned = {"type": "ROI", "name": "liver", "coordinateSystem": "LPS",
                    "center": [10.0, 20.0, 30.0], "size": [4.0, 6.0, 8.0],
                    "orientation": [1, 0, 0, 0, 1, 0, 0, 0, 1]}
    ras = dict(axis_aligned, name="ras", coordinateSystem="RAS")
    rois = read_roi_file(_roi_json(tmp_path / "a.mrk.json", [axis_aligned, ras]))
    assert [r.name for r in rois] == ["liver", "ras"]
    assert rois[0].corners_lps.shape == (8, 3)
    np.testing.assert_allclose(rois[0].corners_lps.min(0), [8, 17, 26])
    np.testing.assert_allclose(rois[0].corners_lps.max(0), [12, 23, 34])
    # RAS (10, 20, 30) is LPS (-10, -20, 30).
    np.testing.assert_allclose(rois[1].corners_lps.min(0), [-12, -23, 26])
    np.testing.assert_allclose(rois[1].corners_lps.max(0), [-8, -17, 34])


def test_read_roi_orientation_columns_are_axes(tmp_path):
    # Columns of 'orientation' are the ROI axes: first axis along P, second along -L.
    roi = {"type": "ROI", "name": "r", "coordinateSystem": "LPS", "center": [0, 0, 0],
           "size": [10.0, 2.0, 4.0], "orientation": [0, -1, 0, 1, 0, 0, 0, 0, 1]}
    corners = read_roi_file(_roi_json(tmp_path / "o.mrk.json", [roi]))[0].corners_lps
    np.testing.assert_allclose(corners.max(0), [1, 5, 2], atol=1e-12)


def test_read_roi_center_from_control_point(tmp_path):
    roi = {"type": "ROI", "coordinateSystem": "LPS", "size": [2, 2, 2],
           "controlPoints": [{"position": [1, 2, 3]}]}
    rois = read_roi_file(_roi_json(tmp_path / "c.mrk.json", [roi]))
    np.testing.assert_allclose(rois[0].corners_lps.mean(0), [1, 2, 3])
    assert rois[0].name == "c"  # Slicer writes no name; it names the loaded node after the file
    rois = read_roi_file(_roi_json(tmp_path / "two.mrk.json", [roi, roi]))
    assert [r.name for r in rois] == ["two 1", "two 2"]


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a readable JSON"),
    (json.dumps({"markups": []}), "no non-empty 'markups'"),
    (json.dumps([1, 2]), "no non-empty 'markups'"),
    (json.dumps({"markups": [{"type": "Fiducial", "controlPoints": []}]}),
     "markup 1 is of type 'Fiducial', not an ROI"),
    (json.dumps({"markups": [{"type": "ROI", "center": [0, 0, 0]}]}), "has no 'size'"),
    (json.dumps({"markups": [{"type": "ROI", "center": [0, 0], "size": [1, 1, 1]}]}),
     "'center' must be a list of 3 numbers"),
    (json.dumps({"markups": [{"type": "ROI", "size": [1, 1, 1]}]}), "has no 'center'"),
    (json.dumps({"markups": [{"type": "ROI", "center": [0, 0, 0], "size": [1, 1, 1],
                              "coordinateSystem": "XYZ"}]}), "unknown coordinateSystem"),
    (json.dumps({"markups": [{"type": "ROI", "center": [0, 0, 0], "size": [1, 1, 1],
                              "orientation": [1, 0, 0]}]}), "'orientation' must be a list of 9"),
])
def test_read_roi_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad.mrk.json"
    path.write_text(content)
    with pytest.raises(LiteMedSAMError, match=message) as info:
        read_roi_file(path)
    assert "bad.mrk.json" in str(info.value)


def test_read_roi_missing_file(tmp_path):
    with pytest.raises(LiteMedSAMError, match="ROI file not found"):
        read_roi_file(tmp_path / "nope.mrk.json")


# --- against Slicer's own MRML classes (slicer-core) ------------------------------------------


def _rotation(axis: str, degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    a, b = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    rotation = np.eye(3)
    rotation[a, a], rotation[a, b], rotation[b, a], rotation[b, b] = c, -s, s, c
    return rotation


def _make_slicer_roi(slicer, scene, rotation, centre_ras, size):
    import vtk

    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
    roi.SetName("tumour box")
    roi.SetSize(*size)
    matrix = vtk.vtkMatrix4x4()
    for row in range(3):
        for col in range(3):
            matrix.SetElement(row, col, rotation[row, col])
        matrix.SetElement(row, 3, centre_ras[row])
    roi.GetObjectToNodeMatrix().DeepCopy(matrix)
    return roi


def _slicer_corners_lps(roi) -> np.ndarray:
    """The ROI's 8 corners from Slicer's object-to-world matrix, converted to LPS."""
    matrix = roi.GetObjectToWorldMatrix()
    half = np.array(roi.GetSize()) / 2.0
    corners = []
    for signs in itertools.product((-1.0, 1.0), repeat=3):
        ras = matrix.MultiplyPoint([*(np.array(signs) * half), 1.0])[:3]
        corners.append([-ras[0], -ras[1], ras[2]])
    return np.array(corners)


def _assert_same_corner_set(actual, expected):
    actual = np.asarray(sorted(map(tuple, np.round(actual, 9))))
    expected = np.asarray(sorted(map(tuple, np.round(expected, 9))))
    np.testing.assert_allclose(actual, expected, atol=1e-6)


@pytest.mark.parametrize("system", ["RAS", "LPS"])
@pytest.mark.parametrize("axis", ["x", "y", "z"])
def test_read_roi_matches_slicer_geometry(slicer_scene, tmp_path, system, axis):
    slicer, scene, _, _ = slicer_scene
    roi = _make_slicer_roi(slicer, scene, _rotation(axis, 30.0), (12.5, -40.0, 7.25),
                           (20.0, 10.0, 6.0))
    storage = roi.CreateDefaultStorageNode()
    scene.AddNode(storage)
    storage.SetCoordinateSystem(getattr(slicer.vtkMRMLStorageNode, f"CoordinateSystem{system}"))
    path = tmp_path / "tumour box.mrk.json"
    storage.SetFileName(str(path))
    assert storage.WriteData(roi) == 1
    assert json.loads(path.read_text())["markups"][0]["coordinateSystem"] == system

    (ours,) = read_roi_file(path)
    assert ours.name == "tumour box"  # Slicer writes no name: taken from the file name
    expected = _slicer_corners_lps(roi)
    # Same corners in the same order (our order is Slicer's sign order).
    np.testing.assert_allclose(ours.corners_lps, expected, atol=1e-9)
    # Independent checks against Slicer: axis-aligned RAS bounds, and points in/out of the ROI.
    bounds = [0.0] * 6
    roi.GetBounds(bounds)
    ras = ours.corners_lps * [-1, -1, 1]
    np.testing.assert_allclose(ras.min(0), bounds[0::2], atol=1e-9)
    np.testing.assert_allclose(ras.max(0), bounds[1::2], atol=1e-9)
    centre = ras.mean(0)
    for corner in ras:
        assert roi.IsPointInROIWorld(list(centre + 0.98 * (corner - centre)))
        assert not roi.IsPointInROIWorld(list(centre + 1.02 * (corner - centre)))


def test_read_roi_lps_edited_without_center_matches_slicer_reader(slicer_scene, tmp_path):
    """Slicer's default LPS file, with 'center' removed: Slicer and we use the control point."""
    slicer, scene, _, logics = slicer_scene
    logic = logics["markups"]
    roi = _make_slicer_roi(slicer, scene, _rotation("y", 30.0), (3.0, 4.0, -5.0), (8, 9, 10))
    storage = roi.CreateDefaultStorageNode()
    scene.AddNode(storage)
    path = tmp_path / "edited.mrk.json"
    storage.SetFileName(str(path))
    assert storage.WriteData(roi) == 1
    document = json.loads(path.read_text())
    assert document["markups"][0]["coordinateSystem"] == "LPS"  # Slicer's default
    del document["markups"][0]["center"]
    path.write_text(json.dumps(document))

    loaded = scene.GetNodeByID(logic.LoadMarkups(str(path), "reloaded"))
    (ours,) = read_roi_file(path)
    np.testing.assert_allclose(ours.corners_lps, _slicer_corners_lps(loaded), atol=1e-9)
    np.testing.assert_allclose(ours.corners_lps, _slicer_corners_lps(roi), atol=1e-9)


def test_roi_to_voxel_box_on_oblique_image(slicer_scene, tmp_path):
    """An ROI drawn around known voxels of an oblique image gives exactly those voxels."""
    slicer, scene, _, _ = slicer_scene
    image = _oblique_image()
    direction = np.array(image.GetDirection()).reshape(3, 3)
    first, last = np.array([8, 5, 3]), np.array([17, 12, 7])
    # ROI aligned with the image axes, faces half a voxel outside the wanted voxel centres.
    centre_lps = np.array(image.TransformContinuousIndexToPhysicalPoint(
        ((first + last) / 2.0).tolist()))
    size = (last - first + 1) * np.array(image.GetSpacing())
    flip = np.diag([-1.0, -1.0, 1.0])
    roi = _make_slicer_roi(slicer, scene, flip @ direction, flip @ centre_lps, size)
    storage = roi.CreateDefaultStorageNode()
    scene.AddNode(storage)
    path = tmp_path / "aligned.mrk.json"
    storage.SetFileName(str(path))
    assert storage.WriteData(roi) == 1
    (ours,) = read_roi_file(path)
    box = box_from_physical_corners(ours.corners_lps, image)
    assert box == Box3D(*first, *last)
