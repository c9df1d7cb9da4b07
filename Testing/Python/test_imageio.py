"""Tests for LiteMedSAMLib.imageio: reading images and DICOM series, checks, writing masks."""

from __future__ import annotations

import hashlib
import logging
import math
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from LiteMedSAMLib.errors import LiteMedSAMError
from LiteMedSAMLib.imageio import (
    DEFAULT_COLORS,
    TEMPORARY_PREFIX,
    check_image,
    list_dicom_series,
    read_image,
    remove_stale_temporaries,
    write_segmentation,
)

SPACING = (0.7, 0.8, 2.5)
ORIGIN = (-50.0, 20.0, 10.5)


def _oblique_direction(degrees: float = 30.0) -> tuple[float, ...]:
    """Rotation of ``degrees`` about the x axis then z axis: oblique, right-handed."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    about_z = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    about_x = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    return tuple((about_z @ about_x).ravel())


def _phantom(size_xyz=(24, 20, 8), pixel=sitk.sitkInt16) -> sitk.Image:
    """A small oblique, anisotropic volume with a bright block and a gradient."""
    nx, ny, nz = size_xyz
    array = (np.arange(nz)[:, None, None] * 100 + np.arange(ny)[None, :, None] * 3
             + np.arange(nx)[None, None, :]).astype(np.int16)
    array[2:5, 5:12, 6:15] += 1000
    image = sitk.Cast(sitk.GetImageFromArray(array), pixel)
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    image.SetDirection(_oblique_direction())
    return image


def _assert_same_geometry(a: sitk.Image, b: sitk.Image, tol: float = 1e-5) -> None:
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=tol)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=tol)


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# read_image


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".mha"])
def test_read_image_files_keep_geometry_and_voxels(tmp_path, suffix):
    image = _phantom()
    path = tmp_path / f"ct{suffix}"
    sitk.WriteImage(image, str(path))
    before = _digest(path)
    loaded = read_image(path)
    _assert_same_geometry(loaded, image)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(loaded), sitk.GetArrayFromImage(image))
    assert _digest(path) == before  # input never modified


def test_read_image_errors(tmp_path):
    with pytest.raises(LiteMedSAMError, match="Image not found: .*missing.nrrd"):
        read_image(tmp_path / "missing.nrrd")
    bad = tmp_path / "broken.nrrd"
    bad.write_bytes(b"this is not an image")
    with pytest.raises(LiteMedSAMError, match="Could not read .*broken.nrrd as an image"):
        read_image(bad)
    with pytest.raises(LiteMedSAMError, match="No DICOM series found in folder"):
        read_image(tmp_path)
    good = tmp_path / "ok.nrrd"
    sitk.WriteImage(_phantom(), str(good))
    with pytest.raises(LiteMedSAMError, match="series_id applies to DICOM folders only"):
        read_image(good, series_id="1.2.3")


_UID_ROOT = "1.2.826.0.1.3680043.2.1125.77"


def _write_dicom_series(image: sitk.Image, folder, series_number: int, description: str,
                        prefix: str) -> str:
    """Write ``image`` as one DICOM file per slice; returns the Series Instance UID."""
    series_uid = f"{_UID_ROOT}.{series_number}"
    d = image.GetDirection()
    orientation = "\\".join(f"{v:.10f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        slice_image = image[:, :, k]
        tags = {
            "0008|0060": "CT", "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
            "0020|000d": f"{_UID_ROOT}.1000", "0020|000e": series_uid,
            "0008|0018": f"{series_uid}.{k + 1}", "0008|103e": description,
            "0020|0011": str(series_number), "0020|0013": str(k + 1),
            "0020|0037": orientation,
            "0020|0032": "\\".join(f"{v:.10f}"
                                   for v in image.TransformIndexToPhysicalPoint((0, 0, k))),
        }
        for tag, value in tags.items():
            slice_image.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{prefix}{k:03d}.dcm"))
        writer.Execute(slice_image)
    return series_uid


def test_a_folder_without_dicom_gets_our_message_only(tmp_path, capfd):
    """GDCM's own multi-line warning (ITK source path, object address) no longer comes first."""
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(LiteMedSAMError, match="No DICOM series found in folder"):
        read_image(tmp_path)
    assert "GDCMSeriesFileNames" not in capfd.readouterr().err
    assert sitk.ProcessObject.GetGlobalWarningDisplay()  # ITK's warnings are back on for the rest


def test_read_dicom_series_geometry(tmp_path):
    image = _phantom()
    _write_dicom_series(image, tmp_path, 1, "axial CT", "ct")
    loaded = read_image(tmp_path)
    _assert_same_geometry(loaded, image, tol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(loaded), sitk.GetArrayFromImage(image))
    # A single file of the series reads as one slice at its own position.
    one = read_image(tmp_path / "ct003.dcm")
    np.testing.assert_allclose(one.GetOrigin(), image.TransformIndexToPhysicalPoint((0, 0, 3)),
                               atol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(one).reshape(20, 24),
                                  sitk.GetArrayFromImage(image)[3])


def test_read_dicom_folder_with_two_series(tmp_path, caplog):
    big = _phantom()
    small = _phantom(size_xyz=(24, 20, 3))
    big_uid = _write_dicom_series(big, tmp_path, 2, "big series", "a")
    small_uid = _write_dicom_series(small, tmp_path, 3, "small series", "b")
    infos = list_dicom_series(tmp_path)
    assert [(i.series_id, i.description, i.n_files) for i in infos] == \
        [(big_uid, "big series", 8), (small_uid, "small series", 3)]

    with caplog.at_level(logging.WARNING, logger="LiteMedSAMLib.imageio"):
        chosen = read_image(tmp_path)
    assert chosen.GetSize() == (24, 20, 8)
    assert "2 DICOM series" in caplog.text and big_uid in caplog.text and small_uid in caplog.text

    other = read_image(tmp_path, series_id=small_uid)
    assert other.GetSize() == (24, 20, 3)
    with pytest.raises(LiteMedSAMError, match=r"not in .*Series found: .*big series.*small"):
        read_image(tmp_path, series_id="1.2.3.4")


# ---------------------------------------------------------------------------------------------
# check_image


@pytest.mark.parametrize("make, dimension, is_rgb, shape", [
    (lambda: sitk.Image([30, 20], sitk.sitkUInt8), 2, False, (20, 30)),
    (lambda: sitk.Image([30, 20], sitk.sitkFloat32), 2, False, (20, 30)),
    (lambda: sitk.Image([30, 20], sitk.sitkVectorUInt8, 3), 2, True, (20, 30)),
    (lambda: sitk.Image([30, 20], sitk.sitkVectorUInt8, 4), 2, True, (20, 30)),
    (lambda: sitk.Image([30, 20, 5], sitk.sitkInt16), 3, False, (5, 20, 30)),
    (lambda: sitk.Image([30, 20, 5], sitk.sitkVectorUInt8, 3), 3, True, (5, 20, 30)),
])
def test_check_image_accepts(make, dimension, is_rgb, shape):
    info = check_image(make())
    assert (info.dimension, info.is_rgb, info.shape) == (dimension, is_rgb, shape)


def test_check_image_rejects_4d():
    with pytest.raises(LiteMedSAMError, match=r"4D images are not supported \(size \(3, 4, 5, 2\)"):
        check_image(sitk.Image([3, 4, 5, 2], sitk.sitkFloat32))


def test_check_image_rejects_multicomponent():
    with pytest.raises(LiteMedSAMError, match="7 components per voxel"):
        check_image(sitk.Image([4, 5, 6], sitk.sitkVectorFloat32, 7))
    with pytest.raises(LiteMedSAMError, match="3 components per voxel"):  # float "RGB"
        check_image(sitk.Image([4, 5], sitk.sitkVectorFloat32, 3))
    with pytest.raises(LiteMedSAMError, match="2 components per voxel"):
        check_image(sitk.Image([4, 5], sitk.sitkVectorUInt8, 2))


def test_check_image_rejects_empty_complex_and_non_images():
    with pytest.raises(LiteMedSAMError, match=r"empty: its size is \(0, 5, 5\)"):
        check_image(sitk.Image([0, 5, 5], sitk.sitkUInt8))
    with pytest.raises(LiteMedSAMError, match="Complex-valued"):
        check_image(sitk.Image([4, 5], sitk.sitkComplexFloat32))
    with pytest.raises(LiteMedSAMError, match="Expected a SimpleITK.Image"):
        check_image(np.zeros((4, 5)))


def test_check_image_counts_nan_and_inf():
    array = np.zeros((3, 4, 5), np.float32)
    array[0, 0, :3] = np.nan
    array[2, 1, 1] = np.inf
    array[2, 1, 2] = -np.inf
    with pytest.raises(LiteMedSAMError, match=r"5 voxels that are not finite numbers "
                                              r"\(3 NaN, 2 infinite\) out of 60"):
        check_image(sitk.GetImageFromArray(array))


# ---------------------------------------------------------------------------------------------
# write_segmentation: labelmaps


def _two_overlapping_masks(shape=(8, 20, 24)):
    first = np.zeros(shape, np.uint8)
    second = np.zeros(shape, bool)
    first[1:5, 3:12, 4:14] = 1
    second[3:7, 8:16, 10:20] = True
    return first, second


def test_write_labelmap_with_overlap_warning(tmp_path):
    reference = _phantom()
    first, second = _two_overlapping_masks()
    path = tmp_path / "out" / "nested" / "labels.nii.gz"  # parent folders are created
    warning = write_segmentation(path, [first, second], reference, ["liver", "tumour"])
    overlap = int((first.astype(bool) & second).sum())
    assert overlap > 0
    assert warning is not None and f"{overlap} voxels" in warning and ".seg.nrrd" in warning

    labels_image = sitk.ReadImage(str(path))
    _assert_same_geometry(labels_image, reference)
    labels = sitk.GetArrayFromImage(labels_image)
    expected = np.zeros(first.shape, np.uint8)
    expected[first == 1] = 1
    expected[second] = 2  # the later mask wins
    np.testing.assert_array_equal(labels, expected)


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".nii", ".mhd"])
def test_write_labelmap_without_overlap_returns_none(tmp_path, suffix):
    reference = _phantom()
    first, second = _two_overlapping_masks()
    second[first == 1] = False
    assert write_segmentation(tmp_path / f"l{suffix}", [first, second], reference,
                              ["a", "b"]) is None
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / f"l{suffix}")))
    assert set(np.unique(labels)) == {0, 1, 2}
    assert (labels == 2).sum() == second.sum()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TEMPORARY_PREFIX)]


@pytest.mark.parametrize("suffix", [".seg.nrrd", ".nii.gz"])
def test_a_full_disk_leaves_no_partial_file_and_keeps_the_old_one(tmp_path, monkeypatch, suffix):
    """The writer's temporary file fills up (half written, then ENOSPC): a clear error, the
    file already at the output path is untouched, no temporary file is left."""
    import errno

    import slicerio

    def full_disk(path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"NRRD0004\n" + b"\0" * 4096)  # a partial file, as a full disk leaves it
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    def full_disk_itk(image, path, *args, **kwargs):
        full_disk(path)

    monkeypatch.setattr(slicerio, "write_segmentation", full_disk)
    monkeypatch.setattr(sitk, "WriteImage", full_disk_itk)
    out = tmp_path / f"case{suffix}"
    out.write_bytes(b"the previous result")
    first, second = _two_overlapping_masks()
    with pytest.raises(LiteMedSAMError, match="no space left on the device.*nothing was written"):
        write_segmentation(out, [first], _phantom(), ["a"])
    assert out.read_bytes() == b"the previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f"{TEMPORARY_PREFIX}{dead}-0badc0de"
    stale.mkdir()
    (stale / "case.seg.nrrd").write_bytes(b"half")
    mine = tmp_path / f"{TEMPORARY_PREFIX}{os.getpid()}-00000000"  # a live process's: kept
    mine.mkdir()
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == [mine.name]


def test_write_labelmap_for_2d_rgb_reference(tmp_path):
    reference = sitk.Image([30, 20], sitk.sitkVectorUInt8, 3)
    reference.SetSpacing((0.5, 0.25))
    reference.SetOrigin((3.0, -4.0))
    mask = np.zeros((20, 30), bool)
    mask[5:10, 2:8] = True
    assert write_segmentation(tmp_path / "m.nrrd", [mask], reference, ["lesion"]) is None
    written = sitk.ReadImage(str(tmp_path / "m.nrrd"))
    assert written.GetDimension() == 2 and written.GetNumberOfComponentsPerPixel() == 1
    _assert_same_geometry(written, reference)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), mask.astype(np.uint8))


# ---------------------------------------------------------------------------------------------
# write_segmentation: input errors


@pytest.mark.parametrize("masks, names, colors, message", [
    ([np.zeros((8, 20, 23), bool)], ["a"], None, r"Mask 1 has shape \(8, 20, 23\).*\(8, 20, 24\)"),
    ([np.zeros((8, 20, 24), np.float32)], ["a"], None, "dtype float32; use bool or uint8"),
    ([np.full((8, 20, 24), 2, np.uint8)], ["a"], None, "values other than 0 and 1"),
    ([], [], None, "No masks to write"),
    ([np.zeros((8, 20, 24), bool)] * 2, ["a"], None, "2 masks but 1 names"),
    ([np.zeros((8, 20, 24), bool)] * 2, ["a", "a"], None, r"unique; repeated: \['a'\]"),
    ([np.zeros((8, 20, 24), bool)], [""], None, "non-empty strings"),
    ([np.zeros((8, 20, 24), bool)], ["a"], [(1.0, 0.0)], r"\(r, g, b\) with each value in"),
    ([np.zeros((8, 20, 24), bool)], ["a"], [(255, 0, 0)], r"\(r, g, b\) with each value in"),
    ([np.zeros((8, 20, 24), bool)], ["a"], [(1, 0, 0)] * 2, "1 masks but 2 colors"),
])
def test_write_segmentation_input_errors(tmp_path, masks, names, colors, message):
    with pytest.raises(LiteMedSAMError, match=message):
        write_segmentation(tmp_path / "x.seg.nrrd", masks, _phantom(), names, colors)
    assert not (tmp_path / "x.seg.nrrd").exists()


def test_write_segmentation_rejects_unknown_suffix_and_bare_array(tmp_path):
    mask = np.zeros((8, 20, 24), bool)
    with pytest.raises(LiteMedSAMError, match=r"output format of .*x\.png.*\.seg\.nrrd"):
        write_segmentation(tmp_path / "x.png", [mask], _phantom(), ["a"])
    with pytest.raises(LiteMedSAMError, match="not a single array"):
        write_segmentation(tmp_path / "x.nii.gz", mask, _phantom(), ["a"])


# ---------------------------------------------------------------------------------------------
# write_segmentation: Slicer .seg.nrrd, read back with slicerio and with Slicer itself


def test_seg_nrrd_read_back_with_slicerio(tmp_path):
    slicerio = pytest.importorskip("slicerio")
    reference = _phantom()
    first, second = _two_overlapping_masks()
    path = tmp_path / "seg" / "result.seg.nrrd"
    colors = [(1.0, 0.0, 0.0), (0.0, 0.5, 1.0)]
    assert write_segmentation(path, [first, second], reference, ["liver", "tumour"],
                              colors) is None

    segmentation = slicerio.read_segmentation(str(path))
    assert segmentation["voxels"].ndim == 4  # overlapping segments: two layers
    assert slicerio.segment_names(segmentation) == ["liver", "tumour"]
    for name, mask, color in zip(["liver", "tumour"], [first, second], colors):
        segment = slicerio.segment_from_name(segmentation, name)
        np.testing.assert_allclose(segment["color"], color)
        # slicerio voxels are [i, j, k]; ours [k, j, i].
        got = slicerio.segment_mask(segmentation, name).transpose(2, 1, 0)
        np.testing.assert_array_equal(got, mask.astype(bool))
    # Geometry: voxel (i, j, k) maps to the reference's physical point.
    ijk_to_lps = np.asarray(segmentation["ijkToLPS"])
    for ijk in [(0, 0, 0), (23, 0, 0), (0, 19, 0), (0, 0, 7), (11, 7, 5)]:
        lps = (ijk_to_lps @ [*ijk, 1.0])[:3]
        np.testing.assert_allclose(lps, reference.TransformIndexToPhysicalPoint(ijk), atol=1e-6)


def test_seg_nrrd_default_colors_and_2d_reference(tmp_path):
    slicerio = pytest.importorskip("slicerio")
    reference = sitk.Image([30, 20], sitk.sitkUInt8)
    reference.SetSpacing((0.5, 0.25))
    reference.SetOrigin((3.0, -4.0))
    masks = [np.zeros((20, 30), bool) for _ in range(13)]
    for index, mask in enumerate(masks):
        mask[index, index:index + 3] = True
    path = tmp_path / "flat.seg.nrrd"
    write_segmentation(path, masks, reference, [f"s{i}" for i in range(13)])
    segmentation = slicerio.read_segmentation(str(path))
    assert segmentation["voxels"].shape == (30, 20, 1)  # one layer, one slice
    colors = [tuple(slicerio.segment_from_name(segmentation, f"s{i}")["color"])
              for i in range(13)]
    np.testing.assert_allclose(colors[:12], DEFAULT_COLORS, atol=1e-6)
    np.testing.assert_allclose(colors[12], DEFAULT_COLORS[0], atol=1e-6)  # palette repeats
    got = slicerio.segment_mask(segmentation, "s4")[:, :, 0].T
    np.testing.assert_array_equal(got, masks[4])
    ijk_to_lps = np.asarray(segmentation["ijkToLPS"])
    np.testing.assert_allclose((ijk_to_lps @ [29, 19, 0, 1])[:3], [3 + 29 * 0.5, -4 + 19 * 0.25, 0])


def _load_in_slicer(slicer, scene, logics, reference_path, seg_path):
    volume = logics["volumes"].AddArchetypeVolume(str(reference_path), "reference")
    assert volume is not None
    segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(seg_path))
    assert storage.ReadData(segmentation_node) == 1
    return volume, segmentation_node


def _ras_to_lps_matrix(vtk_matrix) -> np.ndarray:
    matrix = np.array([[vtk_matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ matrix


def test_seg_nrrd_read_back_with_slicer(slicer_scene, tmp_path):
    slicer, scene, _, logics = slicer_scene
    import vtk

    reference = _phantom()
    reference_path = tmp_path / "reference.nrrd"
    sitk.WriteImage(reference, str(reference_path))
    first, second = _two_overlapping_masks()
    empty = np.zeros_like(first)
    names = ["liver", "tumour", "nothing yet"]
    colors = [(0.9, 0.1, 0.2), (0.1, 0.8, 0.3), (0.2, 0.3, 1.0)]
    seg_path = tmp_path / "result.seg.nrrd"
    write_segmentation(seg_path, [first, second, empty], reference, names, colors)

    volume, node = _load_in_slicer(slicer, scene, logics, reference_path, seg_path)
    segmentation = node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 3
    for name, mask, color in zip(names, [first, second, empty], colors):
        segment_id = segmentation.GetSegmentIdBySegmentName(name)
        assert segment_id, f"Slicer did not find segment {name!r}"
        segment = segmentation.GetSegment(segment_id)
        np.testing.assert_allclose(segment.GetColor(), color, atol=1e-6)
        # Resampled by Slicer onto the reference volume's grid: same voxels, so same geometry.
        got = slicer.util.arrayFromSegmentBinaryLabelmap(node, segment_id, volume)
        np.testing.assert_array_equal(got, mask.astype(got.dtype))

    # The stored labelmap's own IJK-to-world matrix equals the reference's IJK-to-LPS.
    labelmap = node.GetBinaryLabelmapInternalRepresentation(
        segmentation.GetSegmentIdBySegmentName("liver"))
    image_to_world = vtk.vtkMatrix4x4()
    labelmap.GetImageToWorldMatrix(image_to_world)
    expected = np.eye(4)
    direction = np.array(reference.GetDirection()).reshape(3, 3)
    expected[:3, :3] = direction @ np.diag(reference.GetSpacing())
    expected[:3, 3] = reference.GetOrigin()
    np.testing.assert_allclose(_ras_to_lps_matrix(image_to_world), expected, atol=1e-6)


def test_one_palette_for_files_pictures_and_slicer():
    """The CLI (files, overlays) and the Slicer module colour segments from one palette."""
    from LiteMedSAMLib.colors import SEGMENT_COLORS, segment_color

    assert DEFAULT_COLORS is SEGMENT_COLORS and len(set(SEGMENT_COLORS)) == len(SEGMENT_COLORS)
    assert segment_color(len(SEGMENT_COLORS) + 1) == SEGMENT_COLORS[1]
    logic = (Path(__file__).parents[2] / "LiteMedSAM" / "LiteMedSAMLogic" / "logic.py").read_text()
    assert "from LiteMedSAMLib.colors import SEGMENT_COLORS" in logic and "0.122, 0.467" not in logic
