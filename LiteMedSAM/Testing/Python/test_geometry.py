"""ROI -> voxel box, slicing axis and input checks on real MRML nodes; no model runs (fast)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import volumes as V
import vtk

from LiteMedSAMLogic import LiteMedSAMLogic, createRoiFromVoxelBox, geometry
from LiteMedSAMLogic.logic import roiWorldCorners, slicePlane, volumeWorldToIjk

GEOMETRIES = {
    "lps-axial": lambda t: V.withGeometry(V.cropped(t)),
    "oblique": V.oblique,
    "sagittal": V.sagittal,
    "ras-axial": lambda t: V.withGeometry(V.cropped(t), direction=np.diag([1.0, 1.0, 1.0])),
}


@pytest.fixture(params=sorted(GEOMETRIES))
def volume(request, scene, mniT1, tmp_path):
    image = GEOMETRIES[request.param](mniT1)
    return V.load(V.save(image, tmp_path / f"{request.param}.nrrd"), request.param), image


def rasOfIndex(image: sitk.Image, index) -> np.ndarray:
    """RAS position of a continuous SimpleITK index (LPS file geometry, negated x and y)."""
    lps = image.TransformContinuousIndexToPhysicalPoint([float(v) for v in index])
    return np.array([-lps[0], -lps[1], lps[2]])


def axisAlignedRoi(cornersRas: np.ndarray, name: str = "Box"):
    roi = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode", name)
    low, high = cornersRas.min(axis=0), cornersRas.max(axis=0)
    roi.SetCenter(*((low + high) / 2))
    roi.SetSize(*(high - low))
    return roi


def test_loaded_volume_keeps_file_geometry(volume):
    node, image = volume
    assert np.array_equal(slicer.util.arrayFromVolume(node), sitk.GetArrayFromImage(image))
    worldToIjk = volumeWorldToIjk(node)
    for index in [(0, 0, 0), (7.0, 3.5, 2.0), (20, 40, 1)]:
        ijk = geometry.rasToIjkPoints(rasOfIndex(image, index), worldToIjk)[0]
        np.testing.assert_allclose(ijk, index, atol=1e-6)


def test_grid_aligned_roi_maps_to_its_voxel_box(volume):
    node, image = volume
    box = (3, 2, 1, 12, 6, 7)  # inside every test volume (the smallest axis has 10 voxels)
    roi = createRoiFromVoxelBox(node, box, "Box 1")
    job = LiteMedSAMLogic(mode="exact").prepareJob(node, [roi], preset="mr")
    assert job.tasks[0].boxIjk == box
    assert job.tasks[0].segmentName == "Box 1"
    assert job.axis == 2 and not job.sliceMode and job.warnings == []


def test_ras_aligned_roi_covers_the_voxel_centres_inside_it(volume):
    """An ROI drawn in RAS (not along the grid): its box holds every voxel whose centre is inside."""
    node, image = volume
    roi = axisAlignedRoi(np.array([rasOfIndex(image, (10, 2, 2)), rasOfIndex(image, (30, 7, 6))]))
    (task,) = LiteMedSAMLogic(mode="exact").prepareJob(node, [roi], preset="mr").tasks
    bounds = [0.0] * 6
    roi.GetBounds(bounds)
    low, high = np.array(bounds[0::2]), np.array(bounds[1::2])
    i0, j0, k0, i1, j1, k1 = task.boxIjk
    shape = slicer.util.arrayFromVolume(node).shape
    inside = np.zeros(shape, dtype=bool)
    kk, jj, ii = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    ijk = np.stack([ii.ravel(), jj.ravel(), kk.ravel(), np.ones(ii.size)])
    ras = (np.linalg.inv(volumeWorldToIjk(node)) @ ijk)[:3].T
    inside.ravel()[:] = np.all((ras >= low - 1e-6) & (ras <= high + 1e-6), axis=1)
    ks, js, is_ = np.nonzero(inside)
    assert inside.any()
    # the box is the tight box around those voxels (the ROI's hull in index space)
    assert (is_.min(), js.min(), ks.min()) >= (i0, j0, k0)
    assert (is_.max(), js.max(), ks.max()) <= (i1, j1, k1)
    corners = geometry.rasToIjkPoints(roiWorldCorners(roi), volumeWorldToIjk(node))
    expected = [max(int(np.ceil(corners[:, a].min() - 1e-3)), 0) for a in range(3)]
    expected += [min(int(np.floor(corners[:, a].max() + 1e-3)), shape[2 - a] - 1) for a in range(3)]
    assert task.boxIjk == tuple(expected)


def test_roi_under_linear_transform_moves_the_box(scene, mniT1, tmp_path):
    node = V.load(V.save(V.oblique(mniT1), tmp_path / "v.nrrd"), "v")
    roi = createRoiFromVoxelBox(node, (10, 10, 2, 20, 20, 6), "Box")
    ijkToRas = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(ijkToRas)
    shift = np.array([ijkToRas.GetElement(r, 0) for r in range(3)]) * 5  # five voxels along I
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    matrix = vtk.vtkMatrix4x4()
    for r in range(3):
        matrix.SetElement(r, 3, shift[r])
    transform.SetMatrixTransformToParent(matrix)
    roi.SetAndObserveTransformNodeID(transform.GetID())
    assert LiteMedSAMLogic(mode="exact").prepareJob(node, [roi], preset="mr").tasks[0].boxIjk == (15, 10, 2, 25, 20, 6)
    node.SetAndObserveTransformNodeID(transform.GetID())  # both moved: the same voxels again
    assert LiteMedSAMLogic(mode="exact").prepareJob(node, [roi], preset="mr").tasks[0].boxIjk == (10, 10, 2, 20, 20, 6)


def test_left_handed_file_is_flipped_by_the_loader_and_the_box_follows(scene, mniT1, tmp_path):
    """Slicer loads a left-handed file with K reversed; an ROI at the same place follows."""
    image = V.withGeometry(V.cropped(mniT1), direction=np.diag([-1.0, -1.0, -1.0]))
    node = V.load(V.save(image, tmp_path / "lh.nrrd"), "lh")
    nk = image.GetSize()[2]
    assert np.array_equal(slicer.util.arrayFromVolume(node), sitk.GetArrayFromImage(image)[::-1])
    corners = np.array([rasOfIndex(image, (9.5, 9.5, 1.5)), rasOfIndex(image, (20.5, 20.5, 4.5))])
    (task,) = LiteMedSAMLogic(mode="exact").prepareJob(node, [axisAlignedRoi(corners)], preset="mr").tasks
    assert task.boxIjk == (10, 10, nk - 1 - 4, 20, 20, nk - 1 - 2)


def test_partly_outside_roi_is_clipped_with_a_warning(scene, mniT1, tmp_path):
    node = V.load(V.save(V.oblique(mniT1), tmp_path / "v.nrrd"), "v")
    roi = createRoiFromVoxelBox(node, (-5, 90, 2, 10, 120, 6), "Edge box")
    job = LiteMedSAMLogic(mode="exact").prepareJob(node, [roi], preset="mr")
    assert job.tasks[0].boxIjk == (0, 90, 2, 10, 99, 6)
    assert len(job.warnings) == 1 and "Edge box" in job.warnings[0] and "clipped" in job.warnings[0]


def test_roi_outside_the_volume_is_a_clear_error(scene, mniT1, tmp_path):
    node = V.load(V.save(V.oblique(mniT1), tmp_path / "v.nrrd"), "v")
    far = createRoiFromVoxelBox(node, (200, 10, 2, 220, 20, 6), "Far box")
    with pytest.raises(ValueError, match="ROI 'Far box' does not intersect the volume"):
        LiteMedSAMLogic(mode="exact").prepareJob(node, [far], preset="mr")


@pytest.mark.parametrize("orientation, expected", [
    ("Axial", {"lps-axial": 2, "ras-axial": 2, "oblique": 2, "sagittal": 1}),
    ("Sagittal", {"lps-axial": 0, "ras-axial": 0, "oblique": 0, "sagittal": 2}),
    ("Coronal", {"lps-axial": 1, "ras-axial": 1, "oblique": 1, "sagittal": 0}),
])
def test_slice_view_normal_picks_the_matching_ijk_axis(volume, orientation, expected):
    node, _ = volume
    sliceNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSliceNode")
    sliceNode.SetOrientation(orientation)
    normal, _ = slicePlane(sliceNode)
    axis = geometry.nearestIjkAxis(normal, np.linalg.inv(volumeWorldToIjk(node)))
    assert axis == expected[node.GetName()]


def test_slice_mode_box_is_the_shown_slice(scene, mniT1, tmp_path):
    """Sagittal acquisition, axial view: the job slices along J at the view's S position."""
    image = V.sagittal(mniT1)
    node = V.load(V.save(image, tmp_path / "sag.nrrd"), "sag")
    roi = createRoiFromVoxelBox(node, (20, 2, 30, 60, 8, 45), "Box")  # i = A-P, j = S-I, k = L-R
    sliceNode = scene.AddNewNodeByClass("vtkMRMLSliceNode")
    sliceNode.SetOrientation("Axial")
    sliceNode.SetSliceOffset(float(rasOfIndex(image, (0, 5, 0))[2]))
    job = LiteMedSAMLogic(mode="exact").prepareJob(node, [roi], sliceNode=sliceNode, preset="mr")
    assert (job.axis, job.sliceMode, job.permutation) == (1, True, (1, 0, 2))
    assert job.tasks[0].sliceIndex == 5
    assert job.tasks[0].boxIjk == (20, 5, 30, 60, 5, 45)
    sliceNode.SetSliceOffset(float(rasOfIndex(image, (0, 9, 0))[2]))  # above the box
    with pytest.raises(ValueError, match="does not cross ROI 'Box'"):
        LiteMedSAMLogic(mode="exact").prepareJob(node, [roi], sliceNode=sliceNode, preset="mr")


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_permutation_moves_box_and_voxels_together(axis):
    array = np.zeros((6, 7, 8), dtype=np.uint8)  # [k, j, i]
    box = (2, 3, 1, 5, 4, 3)  # i0, j0, k0, i1, j1, k1
    array[1:4, 3:5, 2:6] = 1
    permutation = geometry.slicingPermutation(axis)
    permuted = geometry.permuteArray(array, permutation)
    x0, y0, z0, x1, y1, z1 = geometry.permuteBox(box, permutation)
    assert permuted.shape[0] == array.shape[2 - axis]
    assert permuted[z0:z1 + 1, y0:y1 + 1, x0:x1 + 1].all() and permuted.sum() == array.sum()
    back = permuted.transpose(geometry.inversePermutation(permutation))
    assert np.array_equal(back, array)
    rgb = np.zeros((6, 7, 8, 3))
    assert geometry.permuteArray(rgb, permutation).shape[3] == 3


def test_bad_inputs_are_clear_value_errors(scene, mniT1, tmp_path):
    logic = LiteMedSAMLogic(mode="exact")
    node = V.load(V.save(V.oblique(mniT1), tmp_path / "v.nrrd"), "v")
    roi = createRoiFromVoxelBox(node, (10, 10, 2, 20, 20, 6), "Box")
    cases = [
        (dict(inputVolume=None, roiNodes=[roi]), "No input volume"),
        (dict(inputVolume=node, roiNodes=[]), "No ROI box given"),
        (dict(inputVolume=node, roiNodes=None), "No ROI box given"),
        (dict(inputVolume=node, roiNodes=[node]), "is not an ROI box"),
        (dict(inputVolume=node, roiNodes=[scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "Unplaced")]),
         "ROI 'Unplaced' has not been placed"),
        (dict(inputVolume=node, roiNodes=[roi], preset="ct-spine"), "Unknown intensity preset"),
        (dict(inputVolume=node, roiNodes=[roi], modelName="nonexistent"), "Unknown model"),
        (dict(inputVolume=scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Empty"), roiNodes=[roi]),
         "has no voxels"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            logic.process(**kwargs)
    thin = createRoiFromVoxelBox(node, (10, 10, 2, 20, 20, 2), "Flat")  # grid-aligned, one slice
    ijkToRas = np.linalg.inv(volumeWorldToIjk(node))
    thin.SetCenter(*(ijkToRas @ [15, 15, 2.5, 1])[:3])  # between two voxel centres along K
    thin.SetSize(10, 10, 0.2)
    with pytest.raises(ValueError, match="ROI 'Flat'.*thinner than one voxel"):
        logic.prepareJob(node, [thin], preset="mr")
    assert len(logic.prepareJob(node, roi, preset="mr").tasks) == 1
