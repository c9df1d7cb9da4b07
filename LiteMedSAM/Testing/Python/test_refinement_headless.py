"""Correcting a segment in Slicer with points and scribbles: the module logic on real MRML nodes.

Slices 8..14 of the shipped example MR (right temporal lobe, which the model under-segments),
tilted 20 degrees with anisotropic spacing, are segmented once per module; every test starts
from a fresh copy of that run's segment and checks the segment's voxels against the library's
session, the points in the scene, undo, locality and clear errors.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import volumes as V
from conftest import makeScene

from LiteMedSAMLib.errors import LiteMedSAMError
from LiteMedSAMLib.evaluation.clicks import next_click
from LiteMedSAMLib.evaluation.metrics import dice
from LiteMedSAMLib.example import EXAMPLE_IMAGE, EXAMPLE_LABEL
from LiteMedSAMLogic import LiteMedSAMLogic, createRoiFromVoxelBox
from LiteMedSAMLogic.segmentCorrection import OBJECT_SCRIBBLE

Z0, Z1 = 8, 14


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    scene = makeScene()
    folder = tmp_path_factory.mktemp("refine")
    image = sitk.ReadImage(str(EXAMPLE_IMAGE))[:, :, Z0:Z1 + 1]
    direction = V.rotation("x", 20) @ np.diag([-1.0, -1.0, 1.0])
    image = V.withGeometry(image, direction=direction)
    volume = V.load(V.save(image, folder / "lobe.nrrd"), "lobe")
    gt = sitk.GetArrayFromImage(sitk.ReadImage(str(EXAMPLE_LABEL)))[Z0:Z1 + 1] == 2  # [k, j, i]
    ks, js, is_ = np.nonzero(gt)
    box = (is_.min(), js.min(), ks.min(), is_.max(), js.max(), ks.max())
    roi = createRoiFromVoxelBox(volume, box, "Right temporal lobe")
    logic = LiteMedSAMLogic(mode="exact")
    segmentation = logic.process(volume, roi, preset="mr", pipeline="official", sliceExtent="roi", showResult=False)
    segmentId = segmentation.GetSegmentation().GetSegmentIdBySegmentName("Right temporal lobe")
    yield dict(scene=scene, volume=volume, gt=gt, roi=roi, logic=logic, segmentation=segmentation,
               segmentId=segmentId, first=segmentArray(segmentation, segmentId, volume).copy())
    scene.Clear(1)


def segmentArray(segmentation, segmentId, volume) -> np.ndarray:
    return np.array(slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, volume))


@pytest.fixture()
def fresh(case):
    """The run's segment and session as the run left them; new point lists and scribbles."""
    logic, segmentation, segmentId = case["logic"], case["segmentation"], case["segmentId"]
    refinement = logic._refinement(segmentation, segmentId)
    nodes = LiteMedSAMLogic.createPromptNodes()
    yield case, refinement, nodes
    while refinement.canUndo:  # back to the run's state, while the point lists still exist
        logic.undoRefinement(segmentation, segmentId)
    assert not refinement.session.prompts and not refinement.session.locked and not refinement.session.cleared
    for node in nodes:
        slicer.mrmlScene.RemoveNode(node)
    slicer.util.updateSegmentBinaryLabelmapFromArray(case["first"], segmentation, segmentId, case["volume"])


def ras(volume, k, j, i) -> list[float]:
    """World RAS of voxel (i, j, k)."""
    import vtk

    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    return list(matrix.MultiplyPoint([float(i), float(j), float(k), 1.0])[:3])


def test_run_left_a_session_and_the_segment_matches_it(case):
    refinement = case["logic"]._refinement(case["segmentation"], case["segmentId"])
    assert refinement.axis == 2
    assert np.array_equal(refinement.session.mask, case["first"])  # K axis: no permutation
    assert case["logic"].canRefine(case["segmentation"], case["segmentId"])


def test_object_point_corrects_the_segment_without_encoding(fresh):
    case, refinement, (positive, negative, scribbles) = fresh
    logic, segmentation, segmentId, volume = case["logic"], case["segmentation"], case["segmentId"], case["volume"]
    before = segmentArray(segmentation, segmentId, volume)
    z = refinement.session.mid
    click = next_click(before[z][None], case["gt"][z][None])
    assert click.positive
    runs = refinement.session.predictor.encoder_runs
    positive.AddControlPointWorld(*ras(volume, z, click.y, click.x))
    changed = logic.refine(segmentation, segmentId, positive, negative, scribbles)
    after = segmentArray(segmentation, segmentId, volume)
    assert z in changed and after[z, click.y, click.x] == 1
    assert dice(after[z], case["gt"][z]) > dice(before[z], case["gt"][z]) + 0.02
    assert np.array_equal(after, refinement.session.mask)
    for k in set(range(len(after))) - set(changed):
        assert np.array_equal(after[k], before[k])
    assert refinement.session.predictor.encoder_runs == runs
    # Nothing new in the nodes: nothing to do.
    assert logic.refine(segmentation, segmentId, positive, negative, scribbles) == []


def test_undo_removes_the_point_and_restores_the_segment(fresh):
    case, refinement, (positive, negative, scribbles) = fresh
    logic, segmentation, segmentId, volume = case["logic"], case["segmentation"], case["segmentId"], case["volume"]
    z = refinement.session.mid
    positive.AddControlPointWorld(*ras(volume, z, 100, 120))
    logic.refine(segmentation, segmentId, positive, negative, scribbles)
    assert logic.canUndoRefinement(segmentation, segmentId)
    logic.undoRefinement(segmentation, segmentId)
    assert positive.GetNumberOfControlPoints() == 0
    assert np.array_equal(segmentArray(segmentation, segmentId, volume), case["first"])
    assert not logic.canUndoRefinement(segmentation, segmentId)


def test_deleting_a_point_replays_and_undo_places_it_again(fresh):
    case, refinement, (positive, negative, scribbles) = fresh
    logic, segmentation, segmentId, volume = case["logic"], case["segmentation"], case["segmentId"], case["volume"]
    z = refinement.session.mid
    positive.AddControlPointWorld(*ras(volume, z, 100, 120))
    negative.AddControlPointWorld(*ras(volume, z, 95, 105))
    logic.refine(segmentation, segmentId, positive, negative, scribbles)
    withBoth = segmentArray(segmentation, segmentId, volume)
    negative.RemoveNthControlPoint(0)
    logic.refine(segmentation, segmentId, positive, negative, scribbles)
    positive.RemoveNthControlPoint(0)
    changed = logic.refine(segmentation, segmentId, positive, negative, scribbles)
    assert z in changed
    assert np.array_equal(segmentArray(segmentation, segmentId, volume), case["first"])  # back to the run
    logic.undoRefinement(segmentation, segmentId)
    logic.undoRefinement(segmentation, segmentId)
    assert positive.GetNumberOfControlPoints() == 1 and negative.GetNumberOfControlPoints() == 1
    assert np.array_equal(segmentArray(segmentation, segmentId, volume), withBoth)
    # The re-placed points are in sync: refining again changes nothing.
    assert logic.refine(segmentation, segmentId, positive, negative, scribbles) == []


def test_scribble_painted_in_a_segmentation_corrects_its_slice(fresh):
    case, refinement, (positive, negative, scribbles) = fresh
    logic, segmentation, segmentId, volume = case["logic"], case["segmentation"], case["segmentId"], case["volume"]
    z = refinement.session.mid
    before = segmentArray(segmentation, segmentId, volume)
    painted = np.zeros_like(before)
    missed = (case["gt"][z] > 0) & (before[z] == 0)
    ys, xs = np.nonzero(missed)
    painted[z, ys[:: max(1, len(ys) // 20)], xs[:: max(1, len(ys) // 20)]] = 1
    scribbleId = scribbles.GetSegmentation().GetSegmentIdBySegmentName(OBJECT_SCRIBBLE)
    slicer.util.updateSegmentBinaryLabelmapFromArray(painted, scribbles, scribbleId, volume)
    changed = logic.refine(segmentation, segmentId, positive, negative, scribbles)
    after = segmentArray(segmentation, segmentId, volume)
    assert z in changed and np.all(after[z] >= before[z])
    assert dice(after[z], case["gt"][z]) > dice(before[z], case["gt"][z])


def test_hand_edits_on_other_slices_survive_a_correction(fresh):
    case, _, (positive, negative, scribbles) = fresh
    logic, segmentation, segmentId, volume = case["logic"], case["segmentation"], case["segmentId"], case["volume"]
    edited = segmentArray(segmentation, segmentId, volume)
    edited[0, :5, :5] = 1  # painted by hand far from anything
    slicer.util.updateSegmentBinaryLabelmapFromArray(edited, segmentation, segmentId, volume)
    positive.AddControlPointWorld(*ras(volume, 5, 100, 120))  # propagation stops at the middle (3)
    changed = logic.refine(segmentation, segmentId, positive, negative, scribbles)
    assert 5 in changed and 0 not in changed
    assert segmentArray(segmentation, segmentId, volume)[0, :5, :5].all()


def test_clear_and_accept_slices(fresh):
    case, _, (positive, negative, scribbles) = fresh
    logic, segmentation, segmentId, volume = case["logic"], case["segmentation"], case["segmentId"], case["volume"]
    top = len(case["gt"]) - 1
    assert segmentArray(segmentation, segmentId, volume)[top].any()
    logic.clearSlice(segmentation, segmentId, top)
    assert not segmentArray(segmentation, segmentId, volume)[top].any()
    logic.acceptSlice(segmentation, segmentId, top - 1)
    kept = segmentArray(segmentation, segmentId, volume)[top - 1].copy()
    positive.AddControlPointWorld(*ras(volume, top - 2, 100, 120))
    logic.refine(segmentation, segmentId, positive, negative, scribbles)
    assert np.array_equal(segmentArray(segmentation, segmentId, volume)[top - 1], kept)
    for _ in range(3):
        logic.undoRefinement(segmentation, segmentId)
    assert np.array_equal(segmentArray(segmentation, segmentId, volume), case["first"])


def test_clear_errors(fresh):
    case, refinement, (positive, negative, scribbles) = fresh
    logic, segmentation, segmentId, volume = case["logic"], case["segmentation"], case["segmentId"], case["volume"]
    positive.AddControlPointWorld(*ras(volume, 0, 100, 120))
    box = refinement.session.box
    narrowed = (box.z0, box.z1)
    assert narrowed == (0, len(case["gt"]) - 1)
    positive.SetNthControlPointPositionWorld(0, *ras(volume, 40, 100, 120))
    with pytest.raises(LiteMedSAMError, match="outside the volume"):
        logic.refine(segmentation, segmentId, positive, negative, scribbles)
    positive.RemoveAllControlPoints()
    other = segmentation.GetSegmentation().AddEmptySegment("", "by hand")
    with pytest.raises(LiteMedSAMError, match="was not made by LiteMedSAM"):
        logic.refine(segmentation, other, positive)
    segmentation.GetSegmentation().RemoveSegment(other)
    positive.AddControlPointWorld(*ras(volume, refinement.session.mid, 100, 120))
    logic.refine(segmentation, segmentId, positive, negative, scribbles)
    with pytest.raises(LiteMedSAMError, match="delete them before clearing"):
        logic.clearSlice(segmentation, segmentId, refinement.session.mid)


def test_other_segments_are_untouched_by_a_correction(fresh):
    case, refinement, (positive, negative, scribbles) = fresh
    logic, segmentation, segmentId, volume = case["logic"], case["segmentation"], case["segmentId"], case["volume"]
    other = segmentation.GetSegmentation().AddEmptySegment("", "by hand")
    painted = np.zeros_like(case["first"])
    painted[2:5, 90:110, 110:130] = 1  # overlaps the corrected region
    slicer.util.updateSegmentBinaryLabelmapFromArray(painted, segmentation, other, volume)
    positive.AddControlPointWorld(*ras(volume, refinement.session.mid, 100, 120))
    changed = logic.refine(segmentation, segmentId, positive, negative, scribbles)
    assert refinement.session.mid in changed
    assert np.array_equal(segmentArray(segmentation, other, volume), painted)
    assert np.array_equal(segmentArray(segmentation, segmentId, volume), refinement.session.mask)
    segmentation.GetSegmentation().RemoveSegment(other)


def test_segments_of_a_dropped_volume_are_no_longer_correctable(case, tmp_path):
    """The logic keeps the embeddings of few volumes; a segment whose volume was dropped says
    so instead of keeping that memory alive."""
    volume = case["volume"]
    other = V.load(V.save(sitk.ReadImage(str(EXAMPLE_IMAGE))[:, :, 8:11], tmp_path / "other.nrrd"), "other")
    logic = LiteMedSAMLogic(mode="exact")
    logic.maximumCachedVolumes = 1
    first = logic.process(volume, createRoiFromVoxelBox(volume, (100, 90, 3, 130, 120, 3), "A"), preset="mr",
                          sliceExtent="roi",
                          showResult=False)
    firstId = first.GetSegmentation().GetSegmentIdBySegmentName("A")
    assert logic.canRefine(first, firstId)
    logic.process(other, createRoiFromVoxelBox(other, (100, 90, 1, 130, 120, 1), "B"), preset="mr", sliceExtent="roi",
                  showResult=False)
    assert not logic.canRefine(first, firstId)
    with pytest.raises(LiteMedSAMError, match="segment its ROI first"):
        logic.refine(first, firstId)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_changed_slices_are_written_along_any_slicing_axis(case, axis):
    """The writer puts session slices (along I, J or K) at the right voxels and nothing else."""
    import types

    from LiteMedSAMLogic import geometry

    volume, logic = case["volume"], case["logic"]
    segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    segmentId = segmentation.GetSegmentation().AddEmptySegment("target")
    shape = case["first"].shape  # [k, j, i]
    before = np.zeros(shape, np.uint8)
    before[1:6, 20:150, 20:140] = 1
    slicer.util.updateSegmentBinaryLabelmapFromArray(before, segmentation, segmentId, volume)
    rng = np.random.default_rng(axis)
    wanted = (rng.random(shape) > 0.5).astype(np.uint8)  # [k, j, i]
    permuted = geometry.permuteArray(wanted, geometry.slicingPermutation(axis))
    refinement = types.SimpleNamespace(
        session=types.SimpleNamespace(slice_mask=lambda z: permuted[z]), axis=axis,
        permutation=geometry.slicingPermutation(axis), worldToIjk=case["logic"]._refinement(
            case["segmentation"], case["segmentId"]).worldToIjk)
    slices = [2, 3, 5]
    logic._writeSlices(segmentation, segmentId, refinement, slices)
    expected = before.copy()
    index = [slice(None)] * 3
    index[2 - axis] = slices
    expected[tuple(index)] = wanted[tuple(index)]
    assert np.array_equal(segmentArray(segmentation, segmentId, volume), expected)
    slicer.mrmlScene.RemoveNode(segmentation)


def test_refine_in_two_steps_writes_what_refine_writes(fresh):
    case, refinement, (positive, negative, scribbles) = fresh
    logic, segmentation, segmentId, volume = case["logic"], case["segmentation"], case["segmentId"], case["volume"]
    z = refinement.session.mid + 1
    before = segmentArray(segmentation, segmentId, volume)
    positive.AddControlPointWorld(*ras(volume, z, 100, 120))
    first = logic.refine(segmentation, segmentId, positive, negative, scribbles, propagate=False)
    assert first == [z]
    shown = segmentArray(segmentation, segmentId, volume)
    assert all(np.array_equal(shown[k], before[k]) for k in range(len(before)) if k != z)
    rest = logic.propagatePending(segmentation, segmentId)
    assert rest and z not in rest
    assert np.array_equal(segmentArray(segmentation, segmentId, volume), refinement.session.mask)
    logic.undoRefinement(segmentation, segmentId)  # both steps at once
    assert np.array_equal(segmentArray(segmentation, segmentId, volume), before)


def test_forgetting_the_scene_ends_corrections(case, tmp_path):
    """A closed scene's node IDs come back in the next scene: nothing may stay correctable."""
    volume = case["volume"]
    logic = LiteMedSAMLogic(mode="exact")
    segmentation = logic.process(volume, createRoiFromVoxelBox(volume, (100, 90, 3, 130, 120, 3), "C"),
                                 preset="mr", sliceExtent="roi", showResult=False)
    segmentId = segmentation.GetSegmentation().GetSegmentIdBySegmentName("C")
    assert logic.canRefine(segmentation, segmentId) and logic.canUndo(segmentation)
    logic.forgetScene()
    assert not logic.canRefine(segmentation, segmentId) and not logic.canUndo(segmentation)
    assert logic._models  # the model stays loaded
    again = logic.process(volume, createRoiFromVoxelBox(volume, (100, 90, 3, 130, 120, 3), "D"),
                          preset="mr", sliceExtent="roi", showResult=False)
    againId = again.GetSegmentation().GetSegmentIdBySegmentName("D")
    assert logic.canRefine(again, againId)
    assert logic.undo(again)  # undoing the run also ends its segments' corrections
    assert not logic.canRefine(again, againId)


def test_scribbles_are_read_on_the_volume_grid_without_resampling(fresh):
    case, refinement, (_, _, scribbles) = fresh
    volume = case["volume"]
    painted = np.zeros_like(case["first"])
    painted[2, 100:104, 110:140] = 1
    painted[4, 90:92, 100:130] = 1
    scribbleId = scribbles.GetSegmentation().GetSegmentIdBySegmentName(OBJECT_SCRIBBLE)
    slicer.util.updateSegmentBinaryLabelmapFromArray(painted, scribbles, scribbleId, volume)
    labelmap = scribbles.GetSegmentation().GetSegment(scribbleId).GetRepresentation("Binary labelmap")
    assert refinement._regionOnVolumeGrid(scribbles, labelmap, 1, volume) is not None  # no resampling
    slices = refinement._painted(scribbles, scribbleId, volume)
    assert sorted(slices) == [2, 4]
    for z, pixels in slices.items():
        assert np.array_equal(pixels, painted[z] > 0)
    # The resampling path (another grid) gives the same slices.
    whole = slicer.util.arrayFromSegmentBinaryLabelmap(scribbles, scribbleId, volume) > 0
    resampled = refinement._slicesOf(np.zeros(3, int), whole)
    assert sorted(resampled) == [2, 4] and all(np.array_equal(resampled[z], slices[z]) for z in slices)
    slicer.util.updateSegmentBinaryLabelmapFromArray(np.zeros_like(painted), scribbles, scribbleId, volume)


def test_accept_and_clear_act_on_the_slice_a_view_shows(fresh):
    case, refinement, _ = fresh
    logic, segmentation, segmentId, volume = case["logic"], case["segmentation"], case["segmentId"], case["volume"]
    view = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSliceNode")
    view.SetOrientation("Axial")
    view.JumpSliceByCentering(*ras(volume, 4, 100, 100))  # the volume is tilted 20 degrees
    assert logic.sliceIndexInView(segmentation, segmentId, view) == 4
    logic.acceptSlice(segmentation, segmentId, logic.sliceIndexInView(segmentation, segmentId, view))
    assert refinement.session.locked == {4}
    view.SetOrientation("Sagittal")
    with pytest.raises(LiteMedSAMError, match="does not show slices along K"):
        logic.sliceIndexInView(segmentation, segmentId, view)
    slicer.mrmlScene.RemoveNode(view)
