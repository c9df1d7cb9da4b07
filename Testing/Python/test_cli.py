"""The ``litemedsam`` command line, end to end on real files."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio

from LiteMedSAMLib.cli import main
from LiteMedSAMLib.evaluation.metrics import dice
from LiteMedSAMLib.example import EXAMPLE_BOXES, EXAMPLE_IMAGE, EXAMPLE_LABEL
from LiteMedSAMLib.imageio import read_label_volume
from LiteMedSAMLib.segmentation import segment_image

LOBE_BOX = ["14", "79", "10", "62", "130", "12"]  # left temporal lobe, 3 slices


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def oblique_image(tmp_path_factory):
    """The example re-labelled with non-identity spacing, origin and an oblique direction."""
    image = sitk.ReadImage(str(EXAMPLE_IMAGE))
    angle = np.deg2rad(25)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    image.SetDirection(tuple((rot @ np.diag([-1, -1, 1])).ravel()))
    image.SetSpacing((0.9, 1.1, 2.5))
    image.SetOrigin((-40.0, 25.0, 12.5))
    path = tmp_path_factory.mktemp("img") / "oblique.nrrd"
    sitk.WriteImage(image, str(path))
    return path


def test_segment_writes_seg_nrrd_that_matches_the_library(oblique_image, tmp_path, capsys):
    before = _sha(oblique_image)
    out = tmp_path / "lobe.seg.nrrd"
    png = tmp_path / "lobe.png"
    assert main(["segment", str(oblique_image), "--box", *LOBE_BOX, "--name", "temporal lobe",
                 "--preset", "mr", "-o", str(out), "--overlay", str(png), "-q"]) == 0
    assert "temporal lobe:" in capsys.readouterr().out
    assert _sha(oblique_image) == before  # the input is never modified
    seg = slicerio.read_segmentation(str(out))
    assert [s["name"] for s in seg["segments"]] == ["temporal lobe"]
    image = sitk.ReadImage(str(oblique_image))
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    np.testing.assert_allclose(seg["ijkToLPS"][:3, :3], direction * np.asarray(image.GetSpacing()), atol=1e-6)
    np.testing.assert_allclose(seg["ijkToLPS"][:3, 3], image.GetOrigin(), atol=1e-6)
    labels, spacing = read_label_volume(out)
    np.testing.assert_allclose(spacing, (2.5, 1.1, 0.9))
    from LiteMedSAMLib.boxes import Box3D
    (expected,), _ = segment_image(image, [Box3D(*map(int, LOBE_BOX))], preset="mr")
    np.testing.assert_array_equal(labels > 0, expected > 0)
    assert set(np.unique(np.nonzero(labels)[0])) == {10, 11, 12}
    assert png.stat().st_size > 10_000


def test_box_mm_roi_and_voxel_box_select_the_same_voxels(oblique_image, tmp_path):
    """One slice, three ways to give the same box: voxel indices, LPS mm, a Slicer ROI file."""
    image = sitk.ReadImage(str(oblique_image))
    lo = np.array(image.TransformContinuousIndexToPhysicalPoint((14.0, 79.0, 11.0)))
    hi = np.array(image.TransformContinuousIndexToPhysicalPoint((62.0, 130.0, 11.0)))
    # an ROI file in RAS, oriented with the volume, covering voxel centres 14..62, 79..130, 11
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    centre_lps = (lo + hi) / 2
    size = [(62 - 14) * 0.9 + 0.5, (130 - 79) * 1.1 + 0.5, 1.0]
    ras = np.diag([-1, -1, 1])
    roi = {"@schema": "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/"
                      "Resources/Schema/markups-schema-v1.0.3.json#",
           "markups": [{"type": "ROI", "coordinateSystem": "RAS", "name": "lobe roi",
                        "center": list(ras @ centre_lps), "size": size,
                        "orientation": list((ras @ direction).ravel()),
                        "controlPoints": []}]}
    roi_path = tmp_path / "lobe.mrk.json"
    roi_path.write_text(json.dumps(roi))
    # --box-mm is axis-aligned in LPS: use the same grid without the rotation
    straight = sitk.ReadImage(str(oblique_image))
    straight.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    straight_path = tmp_path / "straight.nrrd"
    sitk.WriteImage(straight, str(straight_path))
    s_lo = straight.TransformContinuousIndexToPhysicalPoint((14.0, 79.0, 11.0))
    s_hi = straight.TransformContinuousIndexToPhysicalPoint((62.0, 130.0, 11.0))
    outs = []
    for i, (path, box_args) in enumerate([(oblique_image, ["--box", "14", "79", "11", "62", "130", "11"]),
                                          (straight_path, ["--box-mm", *map(str, s_lo), *map(str, s_hi)]),
                                          (oblique_image, ["--roi", str(roi_path)]),
                                          (oblique_image, ["--box2d", "11", "14", "79", "62", "130"])]):
        out = tmp_path / f"out{i}.nii.gz"
        assert main(["segment", str(path), *box_args, "--preset", "mr", "-o", str(out), "-q"]) == 0
        outs.append(sitk.GetArrayFromImage(sitk.ReadImage(str(out))))
    assert outs[0][11].sum() > 300 and not outs[0][10].any()
    np.testing.assert_array_equal(outs[0], outs[1])
    # an ROI one slice thin is a 2D start on that slice: the same as --box2d there, swept beyond it
    np.testing.assert_array_equal(outs[2], outs[3])
    np.testing.assert_array_equal(outs[2][11], outs[0][11])
    assert outs[2][10].any() and outs[2][12].any()
    # and a batch manifest row with that ROI file is the same 2D start
    manifest = tmp_path / "rows.csv"
    manifest.write_text(f"image,roi,preset\n{oblique_image},{roi_path},mr\n")
    assert main(["batch", str(manifest), "-o", str(tmp_path / "batch"), "-q"]) == 0
    (seg,) = (tmp_path / "batch").glob("*.seg.nrrd")
    batch_mask, _ = read_label_volume(seg)
    np.testing.assert_array_equal(batch_mask > 0, outs[2] > 0)
    assert outs[2][10].any() and outs[2][12].any()


def test_two_overlapping_boxes_in_a_labelmap_warn_and_seg_nrrd_keeps_both(oblique_image, tmp_path, caplog):
    args = ["segment", str(oblique_image), "--slice", "11", "--box", "14", "79", "62", "130",
            "--box", "20", "85", "58", "125", "--preset", "mr", "-q"]
    seg_path = tmp_path / "two.seg.nrrd"
    assert main([*args, "-o", str(seg_path)]) == 0
    seg = slicerio.read_segmentation(str(seg_path))
    masks = [slicerio.extract_segments(seg, [(s["name"], 1)])["voxels"] for s in seg["segments"]]
    assert [s["name"] for s in seg["segments"]] == ["box 1", "box 2"]
    assert np.logical_and(masks[0], masks[1]).sum() > 0  # overlap kept
    with caplog.at_level("WARNING"):
        assert main([*args, "-o", str(tmp_path / "two.nii.gz")]) == 0
    assert any("more than one mask" in r.message for r in caplog.records)


def test_dicom_series_folder_input(tmp_path):
    image = sitk.ReadImage(str(EXAMPLE_IMAGE))[:, :, 9:13]
    folder = tmp_path / "dicom"
    folder.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series = "1.2.826.0.1.3680043.2.1125.1.4242"
    for k in range(image.GetDepth()):
        sl = sitk.Cast(image[:, :, k], sitk.sitkInt16)
        for tag, value in [("0020|000e", series), ("0008|0060", "MR"), ("0020|0013", str(k)),
                           ("0020|0032", "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, k))))),
                           ("0020|0037", "\\".join(map(str, image.GetDirection()[0::3] + image.GetDirection()[1::3]))),
                           ("0008|0018", f"{series}.{k}")]:
            sl.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{k}.dcm"))
        writer.Execute(sl)
    out = tmp_path / "dicom.seg.nrrd"
    assert main(["segment", str(folder), "--box", "14", "79", "2", "62", "130", "2", "--preset", "mr",
                 "-o", str(out), "-q"]) == 0
    labels, _ = read_label_volume(out)
    assert labels.shape == (4, 170, 158) and labels[2].sum() > 300 and not labels[[0, 1, 3]].any()


def _write_labels(path, masks, names=None):
    from LiteMedSAMLib.imageio import write_segmentation

    reference = sitk.ReadImage(str(EXAMPLE_LABEL))
    write_segmentation(path, masks, reference, names or [f"s{i}" for i in range(len(masks))])
    return path


def test_evaluate_json_and_table(tmp_path, capsys, caplog):
    """A ground-truth label the prediction misses is reported, not averaged in as 0."""
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(EXAMPLE_LABEL)))
    path = _write_labels(tmp_path / "pred.nii.gz", [array == 1, array == 3])  # labels 1 and 2
    with caplog.at_level("WARNING"):
        assert main(["evaluate", str(path), str(EXAMPLE_LABEL), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["paired_by"] == "label value"
    assert result["labels"]["1"]["dsc"] == 1.0 and result["labels"]["1"]["nsd"] == 1.0
    assert result["labels"]["2"]["dsc"] == 0.0 and result["labels"]["2"]["prediction"] == 2
    assert result["unmatched_ground_truth"] == [3] and result["unmatched_prediction"] == []
    assert result["mean"] == {"dsc": 0.5, "nsd": 0.5, "over": 2}
    assert any("ground-truth label(s) 3 have no counterpart" in r.message for r in caplog.records)
    # --pair overrides the label values
    assert main(["evaluate", str(path), str(EXAMPLE_LABEL), "--pair", "2", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["paired_by"] == "--pair" and list(result["labels"]) == ["3"]
    assert result["labels"]["3"]["dsc"] == 1.0 and result["unmatched_ground_truth"] == [1, 2]
    assert main(["evaluate", str(path), str(EXAMPLE_LABEL)]) == 0
    out = capsys.readouterr().out
    assert "Paired by label value" in out and "over 2 compared" in out
    assert main(["evaluate", str(path), str(EXAMPLE_LABEL), "--pair", "5", "1"]) == 2
    assert "prediction label 5, which is not in" in capsys.readouterr().err


def test_evaluate_pairs_a_one_box_result_by_segment_name(tmp_path, capsys):
    """One box on the second structure: scored against that structure's label (2), not
    against label 1 by position, when both .seg.nrrd files name their segments."""
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(EXAMPLE_LABEL)))
    names = list(EXAMPLE_BOXES)
    truth = _write_labels(tmp_path / "truth.seg.nrrd", [array == v for v in (1, 2, 3)], names)
    one = _write_labels(tmp_path / "one.seg.nrrd", [array == 2], ["Right Temporal Lobe"])
    assert main(["evaluate", str(one), str(truth), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["paired_by"] == "name" and list(result["labels"]) == ["2"]
    assert result["labels"]["2"]["dsc"] == 1.0 and result["labels"]["2"]["name"] == "right temporal lobe"
    assert result["unmatched_ground_truth"] == [1, 3] and result["mean"]["over"] == 1
    # unnamed against named: by label value, so the same mask scores 0 against label 1
    labelmap = _write_labels(tmp_path / "one.nii.gz", [array == 2])
    assert main(["evaluate", str(labelmap), str(truth), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["paired_by"] == "label value" and result["labels"]["1"]["dsc"] == 0.0


def test_models_lists_the_installed_default(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    default = next(r for r in rows if r["default"])
    assert default["name"] == "litemedsam" and default["weights"].endswith("lite_medsam.pth")
    # which corrections a session uses: the shipped click decoder for LiteMedSAM, the heuristic otherwise
    assert default["click_decoder"].endswith("litemedsam_click_decoder.pth") and default["correction"] == "trained-edit"
    assert all(r["click_decoder"] is None and r["correction"] == "edit" for r in rows if r["name"] != "litemedsam")


@pytest.mark.parametrize("make_args, message", [
    (lambda p, t: ["segment", str(t / "missing.nii.gz"), "--box", *LOBE_BOX, "-o", str(t / "o.nii.gz")],
     "not found|does not exist"),
    (lambda p, t: ["segment", str(p), "--box", *LOBE_BOX, "-o", str(p)], "is an input file"),
    (lambda p, t: ["segment", str(p), "--box", "1", "2", "3", "-o", str(t / "o.nii.gz")], "6 numbers"),
    (lambda p, t: ["segment", str(p), "-o", str(t / "o.nii.gz")], "at least one box"),
    (lambda p, t: ["segment", str(p), "--box", "14", "79", "10", "62", "130", "12", "--name", "a", "--name", "b",
                   "-o", str(t / "o.nii.gz")], "2 --name given for 1 boxes"),
    (lambda p, t: ["segment", str(p), "--box", "14", "79", "10", "62", "130", "12", "--model", "nosuchmodel",
                   "-o", str(t / "o.nii.gz")], "unknown model 'nosuchmodel'"),
    (lambda p, t: ["segment", str(p), "--box", "500", "500", "1", "600", "600", "2", "-o", str(t / "o.nii.gz")],
     "outside"),
    (lambda p, t: ["segment", str(p), "--box", "5", "5", "60", "50", "50", "70", "-o", str(t / "o.nii.gz")], "outside"),
    (lambda p, t: ["segment", str(p), "--box", *LOBE_BOX, "--slice", "40", "-o", str(t / "o.nii.gz")], "out of range"),
    (lambda p, t: ["segment", str(p), "--box", *LOBE_BOX, "-o", str(t / "o.txt")], "suffix|extension|\\.txt"),
    (lambda p, t: ["segment", str(p), "--box", *LOBE_BOX, "--window", "0", "40", "-o", str(t / "o.nii.gz")],
     "window width must be positive, got 0"),
    (lambda p, t: ["batch", str(t / "none.csv"), "-o", str(t / "out")], "manifest not found"),
    (lambda p, t: ["batch", str(p), "-o", str(t / "out")], "not a readable CSV manifest"),  # an image as manifest
    (lambda p, t: ["segment", str(p), "--box", *LOBE_BOX, "--point", "30", "100", "-o", str(t / "o.nii.gz")],
     "a point is X Y Z"),
    (lambda p, t: ["segment", str(p), "--box", *LOBE_BOX, "--point", "100", "100", "11", "-o", str(t / "o.nii.gz")],
     r"object point \(100, 100, 11\) lies in no box"),
    (lambda p, t: ["segment", str(p), "--box", *LOBE_BOX, "--box", *LOBE_BOX, "--background-point", "30", "100", "11",
                   "-o", str(t / "o.nii.gz")], "lies in boxes 1, 2"),
])
def test_bad_command_lines_give_clear_errors(oblique_image, tmp_path, capsys, make_args, message):
    assert main(make_args(oblique_image, tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("litemedsam: error:")
    assert pytest.importorskip("re").search(message, err), err
    assert "Traceback" not in err


def test_existing_output_is_not_overwritten(oblique_image, tmp_path, capsys):
    out = tmp_path / "keep.nii.gz"
    out.write_bytes(b"user data")
    assert main(["segment", str(oblique_image), "--box", *LOBE_BOX, "-o", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == b"user data"


def test_output_paths_that_cannot_be_written_are_refused_before_segmenting(oblique_image, tmp_path, capsys,
                                                                            monkeypatch):
    """It used to be found only when writing, after the whole sweep (minutes on a large box)."""
    import LiteMedSAMLib.segmentation as segmentation

    monkeypatch.setattr(segmentation, "segment_image", lambda *a, **k: pytest.fail("segmented before the check"))
    out = tmp_path / "mask.txt"
    assert main(["segment", str(oblique_image), "--box", *LOBE_BOX, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Cannot tell the output format" in err and ".seg.nrrd" in err and not out.exists()
    # the picture too (it used to end in matplotlib's traceback after the mask was written)
    out = tmp_path / "mask.nii.gz"
    assert main(["segment", str(oblique_image), "--box", *LOBE_BOX, "-o", str(out), "--overlay",
                 str(tmp_path / "picture.txt")]) == 2
    err = capsys.readouterr().err
    assert "cannot write a picture as picture.txt: use .png" in err and "Traceback" not in err and not out.exists()
    picture = tmp_path / "kept.png"
    picture.write_bytes(b"the user's picture")
    assert main(["segment", str(oblique_image), "--box", *LOBE_BOX, "-o", str(out), "--overlay",
                 str(picture)]) == 2
    assert "--overwrite" in capsys.readouterr().err and picture.read_bytes() == b"the user's picture"
    # demo -o names a folder
    assert main(["demo", "-o", str(picture)]) == 2
    assert "is a file; -o names the folder" in capsys.readouterr().err


@pytest.mark.parametrize("array, message", [
    (np.zeros((2, 3, 4, 5), np.float32), "4D|dimension"),
    (np.array([[[1.0, np.nan], [0.0, 2.0]]] * 3, np.float32), "NaN"),
])
def test_bad_image_files(tmp_path, capsys, array, message):
    path = tmp_path / "bad.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=False), str(path))
    before = _sha(path)
    assert main(["segment", str(path), "--box", "0", "0", "0", "1", "1", "1", "-o", str(tmp_path / "o.nii.gz")]) == 2
    assert pytest.importorskip("re").search(message, capsys.readouterr().err)
    assert _sha(path) == before


@pytest.mark.parametrize("content", [b"\x80\x02not a checkpoint at all", b"PK\x03\x04truncated zip",
                                     bytes(range(256)) * 20])
def test_corrupt_weights_file(oblique_image, tmp_path, capsys, content):
    """Only the project's one-line message: none of torch's advice (weights_only=False would
    execute code from the file) and no traceback."""
    bad = tmp_path / "broken.pth"
    bad.write_bytes(content)
    assert main(["segment", str(oblique_image), "--box", *LOBE_BOX, "--weights", str(bad),
                 "-o", str(tmp_path / "o.nii.gz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"litemedsam: error: {bad} is not a readable PyTorch checkpoint")
    assert err.count("\n") == 1
    for torch_text in ("weights_only", "Traceback", "file an issue", "miniz"):
        assert torch_text not in err
    assert not (tmp_path / "o.nii.gz").exists()


def test_dice_of_the_demo_structures_against_reference():
    """The shipped example's reference label is a real anatomical split of the brain mask."""
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(EXAMPLE_LABEL)))
    assert set(np.unique(label)) == {0, 1, 2, 3}
    assert dice(label == 1, np.flip(label == 2, axis=2)) > 0.95  # symmetric template


def test_2d_rgb_png(tmp_path):
    """2D RGB images (photos, endoscopy, dermoscopy) take a 4-number box and give a 2D result."""
    rgb = np.zeros((90, 140, 3), np.uint8)
    rgb[...] = (30, 40, 50)
    yy, xx = np.mgrid[:90, :140]
    disc = (yy - 45) ** 2 + (xx - 70) ** 2 < 25 ** 2
    rgb[disc] = (220, 120, 90)
    png = tmp_path / "photo.png"
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(png))
    out = tmp_path / "photo_seg.nrrd"
    assert main(["segment", str(png), "--box", "40", "15", "100", "75", "-o", str(out), "-q"]) == 0
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert mask.shape == (90, 140)
    assert dice(mask > 0, disc) > 0.9
    assert main(["segment", str(png), "--box", "40", "15", "1", "100", "75", "1", "-o", str(tmp_path / "x.nrrd")]) == 2


def test_points_correct_the_box_they_lie_in(oblique_image, tmp_path):
    """--point / --background-point: the box's run, then each point as a correction, exactly
    as a RefinementSession does it."""
    from LiteMedSAMLib.backends import make_predictor
    from LiteMedSAMLib.boxes import Box3D
    from LiteMedSAMLib.refinement import RefinementSession

    out = tmp_path / "corrected.nii.gz"
    assert main(["segment", str(oblique_image), "--box", *LOBE_BOX, "--preset", "mr", "--point", "40", "118", "11",
                 "--background-point", "25", "95", "11", "-o", str(out), "-q"]) == 0
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(out))) > 0
    predictor = make_predictor()
    predictor.set_volume(sitk.GetArrayFromImage(sitk.ReadImage(str(oblique_image))), "mr")
    session = RefinementSession(predictor, Box3D(*map(int, LOBE_BOX)))
    plain = session.run()
    session.add_point(11, 40, 118, True)
    session.add_point(11, 25, 95, False)
    np.testing.assert_array_equal(written, session.mask > 0)
    assert not np.array_equal(written, plain > 0)  # the points changed something


def _subcommands():
    from LiteMedSAMLib.cli import build_parser

    parser = build_parser()
    choices = next(a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction)).choices
    return parser, choices


def test_help_is_plain_text_with_every_argument_and_default_explained():
    parser, commands = _subcommands()
    assert set(commands) >= {"segment", "evaluate", "evaluate-clicks", "evaluate-suite", "models", "demo", "benchmark"}
    for name, sub in [("litemedsam", parser), *commands.items()]:
        text = sub.format_help()
        assert "``" not in text and "::" not in text, name
        for action in sub._actions:
            assert action.help, f"{name}: {action.dest} has no help"
            if action.option_strings and action.default not in (None, False, "==SUPPRESS=="):
                shown = " ".join(map(str, action.default)) if isinstance(action.default, list) else str(action.default)
                assert f"(default: {shown})" in text.replace("\n" + " " * 24, " "), f"{name} {action.dest}"
    assert "litemedsam segment ct.nii.gz" in parser.format_help()  # examples kept


def test_models_table_has_a_header_and_names_the_default(capsys):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "title", "license", "corrections", "weights"]
    assert any(line.startswith("litemedsam (default)") and "trained-edit (click decoder)" in line
               for line in lines[1:])
    starts = {line.index("Apache") for line in lines[1:] if "Apache" in line}
    assert len(starts) == 1 and lines[0].index("license") in starts  # one aligned column


@pytest.mark.parametrize("argv", [["models"], ["--help"], ["evaluate", str(EXAMPLE_LABEL), str(EXAMPLE_LABEL)]])
def test_a_closed_pipe_ends_quietly(argv):
    """``litemedsam models | head -1``: the reader goes away; no BrokenPipeError traceback."""
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written
    proc = subprocess.run([sys.executable, "-m", "LiteMedSAMLib.cli", *argv], stdout=write_end,
                          stderr=subprocess.PIPE, text=True, timeout=300)
    os.close(write_end)
    assert proc.stderr == "" and proc.returncode in (0, 141)  # argparse itself ignores a closed pipe


# ------------------------------------------------------------------------------ edge-case volumes and boxes
def _crop(tmp_path, name, z0, nz, spacing=None, direction=None):
    image = sitk.ReadImage(str(EXAMPLE_IMAGE))[:, :, z0:z0 + nz]
    if spacing is not None:
        image.SetSpacing(spacing)
    if direction is not None:
        image.SetDirection(direction)
    path = tmp_path / name
    sitk.WriteImage(image, str(path))
    return path, image


def test_one_slice_volume(tmp_path):
    path, _ = _crop(tmp_path, "one.nrrd", 11, 1)
    out = tmp_path / "one.nii.gz"
    assert main(["segment", str(path), "--box", "14", "79", "0", "62", "130", "0", "--preset", "mr",
                 "-o", str(out), "-q"]) == 0
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert mask.shape == (1, 170, 158) and mask.sum() > 300
    assert main(["segment", str(path), "--box", *LOBE_BOX, "-o", str(tmp_path / "x.nii.gz")]) == 2  # z 10..12


def test_5mm_anisotropic_slices_box_mm_selects_the_right_slices(tmp_path):
    path, image = _crop(tmp_path, "aniso.nrrd", 10, 3, spacing=(0.9, 0.9, 5.0))
    lo = image.TransformContinuousIndexToPhysicalPoint((14.0, 79.0, 0.6))  # 3 mm above slice 0's centre
    hi = image.TransformContinuousIndexToPhysicalPoint((62.0, 130.0, 1.2))
    corners = np.array([lo, hi])
    out = tmp_path / "aniso.nii.gz"
    assert main(["segment", str(path), "--box-mm", *map(str, corners.min(0)), *map(str, corners.max(0)),
                 "--preset", "mr", "-o", str(out), "-q"]) == 0
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert mask[1].sum() > 300 and not mask[[0, 2]].any()  # only slice 1's centre lies in the box
    np.testing.assert_allclose(sitk.ReadImage(str(out)).GetSpacing(), (0.9, 0.9, 5.0), rtol=1e-6)


def test_oblique_direction_box_mm_covers_the_rotated_corners(tmp_path):
    angle = np.deg2rad(30)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    path, image = _crop(tmp_path, "oblique.nrrd", 10, 3, direction=tuple(rot.ravel()))
    corners = np.array([image.TransformIndexToPhysicalPoint(c) for c in ((14, 79, 1), (62, 130, 1))])
    out = tmp_path / "oblique.nii.gz"
    assert main(["segment", str(path), "--box-mm", *map(str, corners.min(0)), *map(str, corners.max(0)),
                 "--preset", "mr", "-o", str(out), "-q"]) == 0
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert mask[1].sum() > 300 and not mask[[0, 2]].any()
    ys, xs = np.nonzero(mask[1])  # an axis-aligned LPS box on a rotated grid: inside its voxel bounding box
    assert 14 <= xs.min() and xs.max() <= 62 + 60 and ys.min() >= 0


def test_a_box_covering_the_whole_volume_segments_the_head(tmp_path):
    path, image = _crop(tmp_path, "three.nrrd", 10, 3)
    out = tmp_path / "whole.nii.gz"
    assert main(["segment", str(path), "--box", "0", "0", "0", "157", "169", "2", "--preset", "mr",
                 "-o", str(out), "-q"]) == 0
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out))) > 0
    head = sitk.GetArrayFromImage(image) > 0
    assert all(mask[z].sum() > 1000 for z in range(3))
    assert (mask & head).sum() / mask.sum() > 0.85  # the object, not the background


def test_a_one_pixel_box_warns_that_the_result_is_empty(oblique_image, tmp_path, caplog):
    out = tmp_path / "pixel.nii.gz"
    with caplog.at_level("WARNING"):
        assert main(["segment", str(oblique_image), "--box", "40", "100", "11", "40", "100", "11", "--name", "dot",
                     "--preset", "mr", "-o", str(out), "-q"]) == 0
    assert not sitk.GetArrayFromImage(sitk.ReadImage(str(out))).any()
    assert any("dot: the result is empty" in r.message for r in caplog.records)


def test_an_roi_file_with_several_rois_gives_one_segment_each(tmp_path):
    path, image = _crop(tmp_path, "three.nrrd", 10, 3)
    ras = np.diag([-1, -1, 1])

    def roi(name, x0, x1):
        lo = np.array(image.TransformIndexToPhysicalPoint((x0, 79, 1)))
        hi = np.array(image.TransformIndexToPhysicalPoint((x1, 130, 1)))
        size = list(np.abs(hi - lo) + [0.5, 0.5, 0.5])
        return {"type": "ROI", "coordinateSystem": "RAS", "name": name, "center": list(ras @ ((lo + hi) / 2)),
                "size": size, "orientation": list(np.eye(3).ravel()), "controlPoints": []}

    roi_path = tmp_path / "two.mrk.json"
    roi_path.write_text(json.dumps({"markups": [roi("left lobe", 14, 62), roi("right lobe", 96, 144)]}))
    out = tmp_path / "two.seg.nrrd"
    assert main(["segment", str(path), "--roi", str(roi_path), "--preset", "mr", "-o", str(out), "-q"]) == 0
    seg = slicerio.read_segmentation(str(out))
    assert [s["name"] for s in seg["segments"]] == ["left lobe", "right lobe"]
    labels, _ = read_label_volume(out)
    for label, (x0, x1) in ((1, (14, 62)), (2, (96, 144))):
        zs, ys, xs = np.nonzero(labels == label)
        # each ROI spans one slice: a 2D start there, swept while the lobe goes on
        assert len(zs) > 300 and 1 in set(zs) and x0 <= xs.min() and xs.max() <= x1


@pytest.mark.parametrize("command", [["evaluate-suite", "--data", "{tmp}"], ["benchmark", "--quick"]])
def test_long_runs_check_their_report_path_before_starting(tmp_path, capsys, monkeypatch, command):
    """The suite and the benchmark write their report at the end: a path that cannot be written
    is refused before the run (it used to end the run, minutes or hours later, and lose it)."""
    import LiteMedSAMLib.evaluation.benchmark as benchmark
    import LiteMedSAMLib.evaluation.suite as suite

    monkeypatch.setattr(suite, "run_suite", lambda *a, **k: pytest.fail("ran before the check"))
    monkeypatch.setattr(benchmark, "run_benchmark", lambda *a, **k: pytest.fail("ran before the check"))
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    blocker = tmp_path / "a_file"
    blocker.write_text("user data")
    assert main(args + ["-o", str(blocker / "report.json")]) == 2
    assert "cannot create the folder for" in capsys.readouterr().err and blocker.read_text() == "user data"
    assert main(args + ["-o", str(tmp_path)]) == 2
    assert "is a folder; give the report a file name" in capsys.readouterr().err
