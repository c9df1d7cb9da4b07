"""The module logic running the real model on real MRML nodes (headless, slicer-core).

One oblique MNI T1 crop with two boxes (the lateral ventricles) is segmented once per module;
the tests check the result against the library's own output on the same voxels, the file
geometry, names, colours, the untouched source, .seg.nrrd round trip, re-runs, undo, cancel,
the background worker and single-slice segmentation on a sagittal acquisition.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import slicerio
import volumes as V
import vtk
from conftest import makeScene

from LiteMedSAMLib.errors import SegmentationCancelled
from LiteMedSAMLib.evaluation.metrics import dice
from LiteMedSAMLib.predictor import VolumePredictor
from LiteMedSAMLib.propagation import segment_volume
from LiteMedSAMLogic import LiteMedSAMLogic, createRoiFromVoxelBox
from LiteMedSAMLogic.logic import ROI_TAG
from LiteMedSAMLogic.worker import CANCELLED, DONE, BackgroundRun

BOXES = {"Left ventricle": V.LEFT_VENTRICLE, "Right ventricle": V.RIGHT_VENTRICLE}


def segmentArray(segmentationNode, name, volume) -> np.ndarray:
    segmentId = segmentationNode.GetSegmentation().GetSegmentIdBySegmentName(name)
    assert segmentId, f"no segment named {name!r}"
    return slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, volume)


@pytest.fixture(scope="module")
def oblique(mniT1, tmp_path_factory, request):
    """The scenario: scene, volume, ROIs, segmentation after one volume run, reference data."""
    scene = makeScene()  # one scene for the module: the model runs once for all its tests
    folder = tmp_path_factory.mktemp("oblique")
    image = V.oblique(mniT1)
    path = V.save(image, folder / "oblique.nrrd")
    volume = V.load(path, "MNI T1 oblique")
    rois = {name: createRoiFromVoxelBox(volume, box, name) for name, box in BOXES.items()}
    sourceBefore = slicer.util.arrayFromVolume(volume).copy()
    mtimeBefore = volume.GetImageData().GetMTime()
    logic = LiteMedSAMLogic(mode="exact")
    progress = []
    segmentation = logic.process(volume, list(rois.values()), preset="mr", pipeline="official", sliceExtent="roi",
                                 progressCallback=lambda done, total: progress.append((done, total)))
    predictor = logic._predictors[next(reversed(logic._predictors))]
    yield dict(scene=scene, image=image, path=path, volume=volume, rois=rois, logic=logic,
               segmentation=segmentation, progress=progress, sourceBefore=sourceBefore,
               mtimeBefore=mtimeBefore, encoderRuns=predictor.encoder_runs, folder=folder)
    scene.Clear(1)


@pytest.fixture(scope="module")
def libraryMasks(oblique, model):
    """The library's direct output on the file's voxels with the same voxel boxes."""
    predictor = VolumePredictor(model)
    predictor.set_volume(sitk.GetArrayFromImage(oblique["image"]), preset="mr")
    return dict(zip(BOXES, segment_volume(predictor, list(BOXES.values()), pipeline="official")))


def test_one_segment_per_box_named_after_it_with_distinct_colours(oblique):
    segmentation = oblique["segmentation"].GetSegmentation()
    segments = [segmentation.GetNthSegment(n) for n in range(segmentation.GetNumberOfSegments())]
    assert [s.GetName() for s in segments] == list(BOXES)
    colours = {tuple(round(c, 3) for c in s.GetColor()) for s in segments}
    assert len(colours) == 2 and (0.5, 0.5, 0.5) not in colours
    for segment, roi in zip(segments, oblique["rois"].values()):
        value = vtk.reference("")
        assert segment.GetTag(ROI_TAG, value) and str(value) == roi.GetID()


def test_masks_match_the_library_on_the_same_voxels(oblique, libraryMasks):
    for name, expected in libraryMasks.items():
        actual = segmentArray(oblique["segmentation"], name, oblique["volume"])
        assert actual.shape == expected.shape
        assert dice(actual, expected) > 0.999, name
        assert 300 < np.count_nonzero(actual) < 4000  # a ventricle on 5 slices, not the box


def test_default_mode_is_fast_where_the_cpu_runs_bf16_and_segments_as_exact_does(oblique, libraryMasks):
    """The module's default mode: fast (bfloat16) where the CPU has it (on the suite it scored as
    exact against the labels), else exact; its masks are close to the exact ones, not equal."""
    from LiteMedSAMLib.backends import cpu_runs_bf16, interactive_mode

    logic = LiteMedSAMLogic()
    assert logic.mode is None
    name = "Left ventricle"
    segmentation = logic.process(oblique["volume"], [oblique["rois"][name]], preset="mr", pipeline="official",
                                 sliceExtent="roi", showResult=False)
    assert logic.mode == interactive_mode() == ("fast" if cpu_runs_bf16() else "exact")
    predictor = logic._predictors[next(reversed(logic._predictors))]
    assert predictor.mode == logic.mode
    actual = segmentArray(segmentation, name, oblique["volume"])
    assert actual.any() and dice(actual, libraryMasks[name]) > 0.8
    slicer.mrmlScene.RemoveNode(segmentation)


def test_the_thin_slice_speed_option_from_a_script(oblique, model):
    """``pipeline="official+interp"`` with the ROI's own extent: on these 1.3 mm slices the
    sweep encodes every other slice and gives the library's masks for the same voxels,
    slice spacing and pipeline."""
    from LiteMedSAMLib.refinement import RefinementSession

    logic = LiteMedSAMLogic(mode="exact")
    job = logic.prepareJob(oblique["volume"], [oblique["rois"]["Left ventricle"]], preset="mr",
                           pipeline="official+interp", sliceExtent="roi")
    assert job.pipeline == "official+interp" and 1.2 < job.sliceSpacing < 1.4
    (mask,) = logic.runJob(job)
    predictor = logic._predictors[next(reversed(logic._predictors))]
    x0, y0, z0, x1, y1, z1 = V.LEFT_VENTRICLE
    assert predictor.encoder_runs == (z1 - z0 + 1) - 2  # slices 4 and 6 from their neighbours
    library = VolumePredictor(model)
    library.set_volume(sitk.GetArrayFromImage(oblique["image"]), preset="mr", slice_spacing=job.sliceSpacing)
    expected = RefinementSession(library, V.LEFT_VENTRICLE, pipeline="official+interp").run()
    assert np.array_equal(mask, expected) and mask[z0:z1 + 1].any(axis=(1, 2)).all()


def test_segments_lie_inside_their_box_and_on_dark_ventricle_voxels(oblique):
    image = sitk.GetArrayFromImage(oblique["image"])
    for name, (i0, j0, k0, i1, j1, k1) in BOXES.items():
        mask = segmentArray(oblique["segmentation"], name, oblique["volume"]).astype(bool)
        outside = mask.copy()
        outside[k0:k1 + 1, j0:j1 + 1, i0:i1 + 1] = False
        assert not outside.any()
        assert set(np.nonzero(mask.any(axis=(1, 2)))[0]) == set(range(k0, k1 + 1))
        inBox = image[k0:k1 + 1, j0:j1 + 1, i0:i1 + 1]
        dark = inBox < np.percentile(image[image > 0], 10)
        assert dice(mask[k0:k1 + 1, j0:j1 + 1, i0:i1 + 1], dark) > 0.6
        assert image[mask].mean() < 0.7 * image[image > 0].mean()  # CSF is dark in T1


def test_progress_and_shared_embeddings(oblique):
    total = sum(k1 - k0 + 1 for (_, _, k0, _, _, k1) in BOXES.values())
    assert oblique["progress"] == [(n, total) for n in range(0, total + 1)]  # (0, total) at the start
    assert oblique["encoderRuns"] == 5  # both boxes span slices 3..7: each slice encoded once


def test_source_volume_is_unchanged(oblique):
    volume = oblique["volume"]
    assert np.array_equal(slicer.util.arrayFromVolume(volume), oblique["sourceBefore"])
    assert volume.GetImageData().GetMTime() == oblique["mtimeBefore"]


def test_segmentation_has_the_source_geometry_and_survives_seg_nrrd(oblique):
    segmentationNode, volume = oblique["segmentation"], oblique["volume"]
    reference = segmentationNode.GetNodeReference(segmentationNode.GetReferenceImageGeometryReferenceRole())
    assert reference is volume
    path = oblique["folder"] / "result.seg.nrrd"
    storage = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    assert storage.WriteData(segmentationNode)
    # physical geometry of the file == the source image file (LPS, as SimpleITK reads it)
    written = sitk.ReadImage(str(path))
    source = oblique["image"]
    np.testing.assert_allclose(written.GetOrigin(), source.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(written.GetSpacing(), source.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(written.GetDirection(), source.GetDirection(), atol=1e-5)
    labels = sitk.GetArrayFromImage(written)
    for segment in slicerio.read_segmentation(str(path), skip_voxels=True)["segments"]:
        expected = segmentArray(segmentationNode, segment["name"], volume)
        assert np.array_equal(labels == segment["labelValue"], expected.astype(bool))
    reloaded = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    assert storage.ReadData(reloaded)
    for name in BOXES:
        assert np.array_equal(segmentArray(reloaded, name, volume),
                              segmentArray(segmentationNode, name, volume))


def test_rerun_replaces_only_that_box_reuses_embeddings_and_undoes(oblique):
    logic, volume, segmentationNode = oblique["logic"], oblique["volume"], oblique["segmentation"]
    right = oblique["rois"]["Right ventricle"]
    leftBefore = segmentArray(segmentationNode, "Left ventricle", volume)
    rightBefore = segmentArray(segmentationNode, "Right ventricle", volume)
    predictor = logic._predictors[next(reversed(logic._predictors))]
    runsBefore = predictor.encoder_runs
    # the user shrinks the right box to slices 4..6 and renames it: its segment is replaced
    smaller = createRoiFromVoxelBox(volume, (52, 26, 4, 70, 73, 6), "scratch")
    right.GetObjectToNodeMatrix().DeepCopy(smaller.GetObjectToNodeMatrix())
    right.SetSize(smaller.GetSize())
    slicer.mrmlScene.RemoveNode(smaller)
    right.SetName("Right lateral ventricle")
    logic.process(volume, [right], segmentationNode, preset="mr", pipeline="official", sliceExtent="roi")
    assert predictor.encoder_runs == runsBefore  # all slices came from the cache
    segmentation = segmentationNode.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 2
    assert segmentation.GetSegmentIdBySegmentName("Right ventricle") == ""
    rightAfter = segmentArray(segmentationNode, "Right lateral ventricle", volume)
    assert set(np.nonzero(rightAfter.any(axis=(1, 2)))[0]) == {4, 5, 6}
    assert np.array_equal(segmentArray(segmentationNode, "Left ventricle", volume), leftBefore)
    assert logic.canUndo(segmentationNode)
    assert logic.undo(segmentationNode)
    assert np.array_equal(segmentArray(segmentationNode, "Right ventricle", volume), rightBefore)
    assert np.array_equal(segmentArray(segmentationNode, "Left ventricle", volume), leftBefore)
    assert segmentation.GetNumberOfSegments() == 2
    right.SetName("Right ventricle")


def test_cancel_mid_sweep_leaves_the_segmentation_as_it_was(oblique):
    logic, volume, segmentationNode = oblique["logic"], oblique["volume"], oblique["segmentation"]
    rois = list(oblique["rois"].values())
    before = {name: segmentArray(segmentationNode, name, volume)
              for name in ("Left ventricle", "Right ventricle")}
    calls = []
    with pytest.raises(SegmentationCancelled):
        logic.process(volume, rois, segmentationNode, preset="mr", pipeline="official", sliceExtent="roi",
                      progressCallback=lambda d, t: calls.append(d),
                      shouldCancel=lambda: len(calls) >= 3)
    assert calls == [0, 1, 2]  # the start, then two slices
    assert segmentationNode.GetSegmentation().GetNumberOfSegments() == 2
    for name, mask in before.items():
        assert np.array_equal(segmentArray(segmentationNode, name, volume), mask)


def test_background_run_gives_the_same_result_and_cancels(oblique):
    logic, volume = oblique["logic"], oblique["volume"]
    left = oblique["rois"]["Left ventricle"]
    job = logic.prepareJob(volume, [left], preset="mr", pipeline="official", sliceExtent="roi")
    run = BackgroundRun(lambda progress, shouldCancel: logic.runJob(job, progress, shouldCancel)).start()
    assert run.wait(120) == DONE
    assert run.poll()[1] == (5, 5)
    expected = segmentArray(oblique["segmentation"], "Left ventricle", volume)
    assert np.array_equal(run.result[0], expected)

    cancelled = BackgroundRun(lambda progress, shouldCancel: logic.runJob(job, progress, shouldCancel))
    cancelled.cancel()  # before the first slice
    assert cancelled.start().wait(60) == CANCELLED
    assert cancelled.result is None and type(cancelled.error).__name__ == "SegmentationCancelled"


def test_current_slice_on_a_sagittal_acquisition_in_the_axial_view(scene, mniT1, tmp_path, logic, model):
    """Sagittal volume (K = left-right), axial view: the model works on the axial slice (J)."""
    image = V.sagittal(mniT1)
    volume = V.load(V.save(image, tmp_path / "sagittal.nrrd"), "MNI T1 sagittal")
    # the left ventricle box of the axial crop, in the sagittal axes (i = A-P, j = S-I, k = L-R)
    i0, j0, k0, i1, j1, k1 = V.LEFT_VENTRICLE
    roi = createRoiFromVoxelBox(volume, (j0, k0, i0, j1, k1, i1), "Left ventricle")
    sliceNode = scene.AddNewNodeByClass("vtkMRMLSliceNode")
    sliceNode.SetOrientation("Axial")
    lps = image.TransformIndexToPhysicalPoint((0, 5, 0))
    sliceNode.SetSliceOffset(lps[2])
    segmentationNode = logic.process(volume, [roi], sliceNode=sliceNode, preset="mr", pipeline="official",
                                     sliceExtent="roi")
    mask = segmentArray(segmentationNode, "Left ventricle", volume)  # [k, j, i]
    assert set(np.nonzero(mask.any(axis=(0, 2)))[0]) == {5}  # only the axial slice j = 5
    # the library on the same axial slice ([j, k, i] array, slice 5, box in (i, k))
    predictor = VolumePredictor(model)
    predictor.set_volume(sitk.GetArrayFromImage(image).transpose(1, 0, 2), preset="mr")
    expected = predictor.predict_slice(5, (j0, i0, j1, i1)).mask  # x = i (A-P), y = k (L-R)
    assert dice(mask[:, 5, :], expected) > 0.999
    # physically, it is the left ventricle of the axial crop on template slice 95
    axial = sitk.GetArrayFromImage(V.cropped(mniT1))[5]  # [y, x] = [A-P row, L-R col]
    dark = axial < np.percentile(axial[axial > 0], 10)
    region = np.zeros_like(dark)
    region[j0:j1 + 1, i0:i1 + 1] = True
    assert dice(mask[:, 5, :].T, dark & region) > 0.5  # mask[k, i] = [x, y]: transpose
    assert dice(mask[:, 5, :], dark & region) < 0.2  # a flipped mapping would miss it
    assert axial[mask[:, 5, :].T > 0].mean() < 0.7 * axial[axial > 0].mean()
    # a second slice run accumulates: slice 6 is added, slice 5 is kept
    sliceNode.SetSliceOffset(image.TransformIndexToPhysicalPoint((0, 6, 0))[2])
    logic.process(volume, [roi], segmentationNode, sliceNode=sliceNode, preset="mr", pipeline="official",
                  sliceExtent="roi")
    again = segmentArray(segmentationNode, "Left ventricle", volume)
    assert set(np.nonzero(again.any(axis=(0, 2)))[0]) == {5, 6}
    assert np.array_equal(again[:, 5, :], mask[:, 5, :])


def test_2d_rgb_image(scene, logic):
    """A 2D colour image (a one-slice vector volume, as Slicer loads a PNG/JPG)."""
    yy, xx = np.mgrid[0:120, 0:160]
    rgb = np.full((120, 160, 3), 40, dtype=np.uint8)
    disk = (yy - 60) ** 2 + (xx - 70) ** 2 < 30 ** 2
    rgb[disk] = (220, 120, 60)
    ijkToRas = np.diag([-0.5, -0.5, 1.0, 1.0])
    volume = slicer.util.addVolumeFromArray(rgb[None], ijkToRas, name="photo",
                                            nodeClassName="vtkMRMLVectorVolumeNode")
    roi = createRoiFromVoxelBox(volume, (35, 25, 0, 105, 95, 0), "Disk")
    segmentationNode = logic.process(volume, [roi], preset="auto", pipeline="official", sliceExtent="roi")
    mask = segmentArray(segmentationNode, "Disk", volume)
    assert mask.shape == (1, 120, 160)
    assert dice(mask[0], disk) > 0.9
