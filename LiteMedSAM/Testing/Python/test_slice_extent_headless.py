"""A box drawn in one slice view segments the whole object (headless, real MRML, real model).

Slicer gives an ROI placed with two clicks in a slice view a depth equal to its shortest
in-plane side (``vtkMRMLMarkupsROINode::UpdateBoxROIFromControlPoints`` pads the zero axis),
so its extent across slices says nothing about the object. The default slice extent,
"automatic", starts from the slice the box was drawn on (the ROI's centre) and sweeps until
the object ends; "roi" keeps the ROI's own extent. Both are checked against the library on
the same voxels, on an oblique volume with non-identity spacing.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import volumes as V
from conftest import makeScene

from LiteMedSAMLib.boxes import SliceBox
from LiteMedSAMLib.errors import LiteMedSAMError
from LiteMedSAMLib.evaluation.metrics import dice
from LiteMedSAMLib.predictor import VolumePredictor
from LiteMedSAMLib.propagation import segment_volume
from LiteMedSAMLogic import LiteMedSAMLogic, createRoiFromVoxelBox

I0, J0, I1, J1 = V.LEFT_VENTRICLE[0], V.LEFT_VENTRICLE[1], V.LEFT_VENTRICLE[3], V.LEFT_VENTRICLE[4]
DRAWN_SLICE = 5


def placedRoi(volume, k: int, name: str, depthVoxels: float | None = None):
    """An ROI as Slicer shapes one drawn with two clicks on slice ``k`` of a view aligned with the
    volume: the clicked rectangle in-plane, centred on the slice, as deep as its shortest
    in-plane side (or ``depthVoxels`` slices)."""
    roi = createRoiFromVoxelBox(volume, (I0, J0, k, I1, J1, k), name)
    width, height, sliceThickness = roi.GetSize()
    depth = min(width, height) if depthVoxels is None else depthVoxels * sliceThickness
    roi.SetSize(width, height, depth)
    return roi


def segmentArray(segmentationNode, name, volume) -> np.ndarray:
    segmentId = segmentationNode.GetSegmentation().GetSegmentIdBySegmentName(name)
    return slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, volume)


@pytest.fixture(scope="module")
def drawn(mniT1, tmp_path_factory):
    scene = makeScene()
    image = V.oblique(mniT1)
    volume = V.load(V.save(image, tmp_path_factory.mktemp("extent") / "oblique.nrrd"), "oblique")
    yield dict(image=image, volume=volume, logic=LiteMedSAMLogic(mode="exact"))
    scene.Clear(1)


@pytest.fixture(scope="module")
def automatic(drawn):
    """The default run (automatic extent, default pipeline) of a box drawn on one slice."""
    roi = placedRoi(drawn["volume"], DRAWN_SLICE, "Drawn")
    job = drawn["logic"].prepareJob(drawn["volume"], [roi], preset="mr")
    masks = drawn["logic"].runJob(job)
    return dict(roi=roi, job=job, mask=masks[0])


def test_placed_roi_depth_is_the_shortest_in_plane_side(drawn, automatic):
    width, height, depth = automatic["roi"].GetSize()
    assert depth == pytest.approx(min(width, height))
    (task,) = automatic["job"].tasks
    # the padded depth covers more slices than the box was drawn on: it would sweep them all
    assert task.boxIjk[5] - task.boxIjk[2] + 1 > 5
    assert task.startSlice == DRAWN_SLICE and automatic["job"].pipeline == "default"


def test_the_job_knows_the_spacing_between_the_slices_the_model_sees(drawn, automatic):
    job = automatic["job"]
    assert job.sliceSpacing == pytest.approx(drawn["image"].GetSpacing()[job.axis])


def test_automatic_extent_is_a_2d_start_from_the_drawn_slice(drawn, automatic, model):
    predictor = VolumePredictor(model)
    predictor.set_volume(sitk.GetArrayFromImage(drawn["image"]), preset="mr",
                         slice_spacing=automatic["job"].sliceSpacing)
    (expected,) = segment_volume(predictor, [SliceBox(DRAWN_SLICE, I0, J0, I1, J1)])
    assert dice(automatic["mask"], expected) > 0.999
    assert automatic["mask"][DRAWN_SLICE].any()
    # a dark ventricle, not the box: far fewer voxels than the box holds on its slices
    slices = np.flatnonzero(automatic["mask"].any(axis=(1, 2)))
    assert automatic["mask"].sum() < 0.6 * (I1 - I0 + 1) * (J1 - J0 + 1) * len(slices)


def test_automatic_extent_does_not_depend_on_the_roi_depth(drawn, automatic):
    thin = placedRoi(drawn["volume"], DRAWN_SLICE, "Thin", depthVoxels=1)
    deep = placedRoi(drawn["volume"], DRAWN_SLICE, "Deep", depthVoxels=40)
    logic = drawn["logic"]
    for roi in (thin, deep):
        (mask,) = logic.runJob(logic.prepareJob(drawn["volume"], [roi], preset="mr"))
        assert np.array_equal(mask, automatic["mask"]), roi.GetName()


def test_roi_extent_uses_the_roi_slices_as_given(drawn, model):
    roi = placedRoi(drawn["volume"], DRAWN_SLICE, "Set", depthVoxels=3)  # slices 4..6
    logic = drawn["logic"]
    job = logic.prepareJob(drawn["volume"], [roi], preset="mr", sliceExtent="roi", pipeline="official")
    (task,) = job.tasks
    assert task.startSlice is None and (task.boxIjk[2], task.boxIjk[5]) == (4, 6)
    segmentation = logic.applyResult(job, logic.runJob(job), showResult=False)
    mask = segmentArray(segmentation, "Set", drawn["volume"])
    predictor = VolumePredictor(model)
    predictor.set_volume(sitk.GetArrayFromImage(drawn["image"]), preset="mr")
    (expected,) = segment_volume(predictor, [task.boxIjk], pipeline="official")
    assert np.array_equal(mask, expected)
    assert set(np.flatnonzero(mask.any(axis=(1, 2)))) <= {4, 5, 6}


def test_bad_extent_and_pipeline_names_are_clear_errors(drawn):
    roi = placedRoi(drawn["volume"], DRAWN_SLICE, "Bad")
    logic = drawn["logic"]
    with pytest.raises(LiteMedSAMError, match="slice extent 'sometimes'"):
        logic.prepareJob(drawn["volume"], [roi], sliceExtent="sometimes")
    with pytest.raises(LiteMedSAMError, match="unknown pipeline 'magic'"):
        logic.prepareJob(drawn["volume"], [roi], pipeline="magic")
