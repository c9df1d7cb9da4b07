"""The simulated-click protocol: click placement on known geometry, and the command line on the
real example (the README's refinement table comes from the same code)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import SimpleITK as sitk

from LiteMedSAMLib.cli import main
from LiteMedSAMLib.errors import LiteMedSAMError
from LiteMedSAMLib.evaluation.clicks import Click, local_bound, next_click, scribble_through


def test_click_at_centre_of_largest_error_region():
    gt = np.zeros((15, 40, 40), bool)
    gt[1:14, 5:35, 5:35] = True
    pred = gt.copy()
    pred[2:13, 10:21, 10:21] = False       # an 11-voxel cube missed: the largest error
    pred[7, 30:33, 30:33] = False          # a small miss
    click = next_click(pred, gt)
    assert click == Click(7, 15, 15, True)
    pred = gt.copy()
    pred[1:14, 5:35, 35:40] = True         # wrong voxels outside: a negative click
    click = next_click(pred, gt)
    assert not click.positive and click.x == 37  # mid-slab (ties in y and z: first voxel)
    assert next_click(gt, gt) is None


def test_click_centre_uses_the_spacing():
    gt = np.zeros((7, 30, 30), bool)
    pred = gt.copy()
    pred[1:6, 4:25, 4:25] = True           # 5 slices of 21 x 21 voxels, all wrong
    # In voxels the region is thinnest in z, so many voxels tie; with 5 mm slices it is
    # thickest in z and the centre is unique.
    assert next_click(pred, gt, spacing_zyx=(5.0, 1.0, 1.0)) == Click(3, 14, 14, False)


def test_local_bound_is_the_error_region_under_the_click():
    gt = np.zeros((20, 20), bool)
    gt[5:15, 5:15] = True
    pred = gt.copy()
    pred[5:15, 12:15] = False   # a 30-pixel missed strip
    pred[0:2, 0:2] = True       # a separate 4-pixel wrong corner
    assert local_bound(pred, gt, 13, 9) == 30
    assert local_bound(pred, gt, 0, 1) == 4
    assert local_bound(pred, gt, 7, 7) == 0  # right there: nothing to correct


def test_a_scribble_runs_through_the_click_along_its_error_region_and_stays_inside():
    region = np.zeros((20, 30), bool)
    region[8:12, 3:27] = True                 # a strip 24 pixels long, 4 high
    stroke = scribble_through(region, 15, 10)
    assert stroke.tolist() == [[x, 10] for x in range(3, 27)]  # end to end along its long axis
    upright = region.T.copy()                 # the same strip standing up
    stroke = scribble_through(upright, 10, 15)
    assert set(stroke[:, 0]) == {10} and (stroke[:, 1].min(), stroke[:, 1].max()) == (3, 26)
    diagonal = np.eye(12, dtype=bool) | np.eye(12, k=1, dtype=bool)
    stroke = scribble_through(diagonal, 5, 5)
    assert diagonal[stroke[:, 1], stroke[:, 0]].all() and len(stroke) >= 10 and [5, 5] in stroke.tolist()
    assert scribble_through(region, 0, 0).tolist() == [[0, 0]]      # not in the region: the click alone
    tiny = np.zeros((5, 5), bool)
    tiny[2, 2] = True
    assert scribble_through(tiny, 2, 2).tolist() == [[2, 2]]


def test_click_shape_mismatch():
    with pytest.raises(LiteMedSAMError, match="differ in shape"):
        next_click(np.zeros((2, 3, 3)), np.zeros((2, 3, 4)))


@pytest.fixture(scope="module")
def small_case(tmp_path_factory, example):
    """Slices 8..12 of the example and its right temporal lobe, as files."""
    image, label, itk = example
    folder = tmp_path_factory.mktemp("clicks")
    crop = sitk.GetImageFromArray(image[8:13])
    crop.SetSpacing(itk.GetSpacing())
    lab = sitk.GetImageFromArray((label[8:13] == 2).astype(np.uint8) * 2)
    lab.CopyInformation(crop)
    sitk.WriteImage(crop, str(folder / "image.nii.gz"))
    sitk.WriteImage(lab, str(folder / "label.nii.gz"))
    return folder / "image.nii.gz", folder / "label.nii.gz"


def test_evaluate_clicks_command(small_case, capsys):
    image, label = small_case
    assert main(["evaluate-clicks", str(image), str(label), "--clicks", "2", "--preset", "mr",
                 "--mode", "torch", "--correction", "edit", "--json", "-q"]) == 0
    report = json.loads(capsys.readouterr().out)
    steps = report["labels"]["2"]
    assert [s["click"] is None for s in steps] == [True, False, False]
    dsc = [s["dsc"] for s in steps]
    assert dsc[2] >= dsc[1] >= dsc[0] and dsc[2] > dsc[0] + 0.02  # clicks help on this case
    assert report["mean"]["dsc"] == pytest.approx(dsc)
    # each click against the step before it, over labels (one label here: no interval)
    first, second = report["click_steps"]
    assert first["mean"] == pytest.approx(dsc[1] - dsc[0]) and first["samples"] == 1 and first["low"] is None
    assert (second["higher"], second["lower"]) == ((1, 0) if dsc[2] > dsc[1] + 0.0005 else (0, 0))
    assert all(0.0 <= s["nsd"] <= 1.0 for s in steps)
    assert steps[1]["click"]["positive"] and steps[1]["changed_slices"] >= 1
    assert report["correction"] == "edit" and report["edge_cut"] is True
    # the edit as it was (no edge cut on negative clicks): the same here, both clicks are positive
    assert main(["evaluate-clicks", str(image), str(label), "--clicks", "2", "--preset", "mr",
                 "--mode", "torch", "--correction", "edit", "--no-edge-cut", "--json", "-q"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["edge_cut"] is False and [s["dsc"] for s in plain["labels"]["2"]] == dsc
    # the challenge's DSC_AUC: trapezoid over the click steps only (2 clicks: their mean)
    assert report["auc"]["labels"]["2"]["dsc_auc"] == pytest.approx((dsc[1] + dsc[2]) / 2)
    assert report["auc"]["mean"]["nsd_auc"] == pytest.approx((steps[1]["nsd"] + steps[2]["nsd"]) / 2)
    assert all(s["slice_seconds"] > 0 for s in steps[1:])
    assert all(s["click_seconds"] >= s["slice_seconds"] for s in steps[1:])  # the clicked slice comes first
    assert steps[0]["click_seconds"] is None
    # where each click's effect went, in voxels: its own slice, the slices re-propagated from it,
    # and the bound of a perfect correction of the error region under it (the click lies in one)
    assert steps[0]["clicked_gain"] is None and steps[0]["local_bound"] is None
    assert all(s["local_bound"] > 0 and isinstance(s["clicked_gain"], int)
               and isinstance(s["propagated_gain"], int) for s in steps[1:])
    assert steps[1]["clicked_gain"] + steps[1]["propagated_gain"] > 0  # the first click helped (dsc rose)


def test_evaluate_clicks_with_scribbles(small_case, capsys):
    """``--scribbles``: each click given as a stroke through it, at the same place; the stroke
    is another prompt than the click (another result), and it corrects its slice too."""
    image, label = small_case
    runs = {}
    for extra in ([], ["--scribbles"]):
        assert main(["evaluate-clicks", str(image), str(label), "--clicks", "1", "--preset", "mr",
                     "--mode", "torch", "--correction", "edit", "--json", "-q", *extra]) == 0
        runs[bool(extra)] = json.loads(capsys.readouterr().out)
    clicked, scribbled = runs[False], runs[True]
    assert scribbled["scribbles"] is True and clicked["scribbles"] is False
    first = [r["labels"]["2"][1] for r in (clicked, scribbled)]
    assert first[0]["click"] == first[1]["click"]  # the same place: the stroke runs through the click
    assert first[1]["dsc"] != first[0]["dsc"]
    assert first[1]["dsc"] > scribbled["labels"]["2"][0]["dsc"] + 0.05 and first[1]["clicked_gain"] > 100


def test_evaluate_clicks_prints_its_table(small_case, capsys):
    """Without --json: the mode, the preset auto chose, one row per label and the means."""
    image, label = small_case
    assert main(["evaluate-clicks", str(image), str(label), "--clicks", "1", "--mode", "torch",
                 "--correction", "edit", "-q"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("torch mode, preset none (auto), edit correction")  # a uint8 image
    dsc_rows = out.split("NSD@")[0].splitlines()
    assert dsc_rows[1].split() == ["DSC", "box", "+1"]
    label_row = dsc_rows[2].split()
    assert label_row[:2] == ["label", "2"] and float(label_row[3]) > float(label_row[2])
    assert "correction edit: DSC_AUC" in out
    assert re.search(r"click 1 against the step before it, DSC: \+0\.\d{3} "
                     r"\(no interval from 1 label; 1 higher, 0 lower of 1 label\)", out)


def test_evaluate_clicks_errors(small_case, tmp_path, capsys):
    image, label = small_case
    assert main(["evaluate-clicks", str(image), str(label), "--label", "7", "--mode", "torch"]) == 2
    assert "label(s) [7] not in" in capsys.readouterr().err
    other = sitk.Image(10, 10, 3, sitk.sitkUInt8)
    sitk.WriteImage(other, str(tmp_path / "other.nii.gz"))
    assert main(["evaluate-clicks", str(image), str(tmp_path / "other.nii.gz"), "--mode", "torch"]) == 2
    assert "not on the same voxel grid" in capsys.readouterr().err
