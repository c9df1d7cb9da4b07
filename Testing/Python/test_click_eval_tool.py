"""tools/eval_click_decoder.py's choices (#13): which labels it evaluates, the box-only
heuristic baseline's session, and its summary over structures."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tool_module import load_tool

tool = load_tool("eval_click_decoder")


def test_labels_are_spread_over_sizes_and_the_box_rule_drops_scattered_ones():
    gt = np.zeros((20, 40, 40), np.int32)
    gt[2:6, 2:10, 2:10] = 1        # 256 voxels, compact
    gt[2:8, 12:22, 2:12] = 2       # 600
    gt[8:18, 2:14, 20:32] = 3      # 1440
    # 4: four blocks of 108 voxels in the volume's corners (1.4% of its box, none over 90% of it)
    for z, y, x in ((0, 0, 0), (0, 34, 34), (17, 0, 34), (17, 34, 0)):
        gt[z:z + 3, y:y + 6, x:x + 6] = 4
    assert tool.pick_labels(gt, 4) == [1, 4, 2, 3]  # every label of 200 voxels or more, by size
    assert tool.pick_labels(gt, 4, box_rule=True) == [1, 2, 3]  # by size
    assert tool.pick_labels(gt, 1, box_rule=True) == [2]       # the middle of the sizes
    gt[gt == 1] = 0
    gt[0, 10, 10:13] = 5           # too small for either pick
    assert tool.pick_labels(gt, 4, box_rule=True) == [2, 3]


def test_the_box_only_baseline_has_no_click_decoder_anywhere(model):
    from LiteMedSAMLib.predictor import VolumePredictor

    volume = np.zeros((3, 64, 64), np.float32)
    volume[:, 20:40, 20:40] = 200.0
    predictor = VolumePredictor(model)
    predictor.set_volume(volume, preset="mr", slice_spacing=1.0)  # thin: the default carries
    session = tool.box_only_session(predictor, (18, 18, 0, 41, 41, 2), correction="edit",
                                    pipeline="default")
    assert session.correction == "edit" and not session.carry and session._click_decoder is None
    assert session.pipeline.window_choice and not session.pipeline.carry
    with pytest.raises(ValueError, match="is the edit correction"):
        tool.box_only_session(predictor, (18, 18, 0, 41, 41, 2), correction="trained-edit")


def test_the_summary_counts_clicks_that_hurt_or_changed_nothing():
    def row(dsc, clicked, changed):
        return {"dsc": dsc, "nsd": dsc, "dsc_auc": 1.0, "nsd_auc": 2.0, "slice_seconds": [0.1, 0.3],
                "clicked_gain": clicked, "propagated_gain": [5, 0], "local_bound": [10, 10],
                "changed_slices": changed}

    report = {"cases": {"a": {"labels": {"1": {"edit": row([0.5, 0.6, 0.7], [4, -2], [3, 0])}}},
                        "b": {"labels": {"2": {"edit": row([0.7, 0.6, 0.9], [0, 6], [0, 2])}}}}}
    s = tool.summarize(report, ["edit"])["edit"]
    assert s["structures"] == 2 and s["dsc"] == pytest.approx([0.6, 0.6, 0.8])
    assert (s["clicked_gain"], s["propagated_gain"], s["local_bound"]) == (8, 10, 40)
    assert s["clicks"] == 4 and s["clicks_hurting_their_slice"] == 1 and s["clicks_changing_nothing"] == 2
    assert s["slice_seconds_median"] == pytest.approx(0.2)
    assert s["last_dsc_per_case"] == pytest.approx({"a": 0.7, "b": 0.9})
    del report["cases"]["a"]["labels"]["1"]["edit"]["changed_slices"]  # a report written before the count
    assert tool.summarize(report, ["edit"])["edit"]["clicks_changing_nothing"] == 1


def test_the_embedding_cache_keeps_each_mode_apart(tmp_path):
    """A ``fast`` (bfloat16) embedding of a slice is not its ``exact`` one: the disk cache must
    not hand one mode's embedding to the other (the exact keys stay as they were)."""
    import torch

    calls = []

    def encoder_of(value):
        return lambda images: calls.append(value) or torch.full((1, 2), value)

    image = torch.arange(6.0).reshape(1, 6)
    exact = tool.DiskCachedEncoder(encoder_of(1.0), tmp_path)
    fast = tool.DiskCachedEncoder(encoder_of(2.0), tmp_path, "fast")
    assert exact(image)[0, 0] == 1.0 and fast(image)[0, 0] == 2.0 and calls == [1.0, 2.0]
    assert exact(image)[0, 0] == 1.0 and fast(image)[0, 0] == 2.0 and calls == [1.0, 2.0]  # from disk
    assert sorted(p.name.endswith("-fast.pt") for p in tmp_path.iterdir()) == [False, True]


def test_corrections_are_compared_paired_by_structure_and_by_subject(tmp_path):
    """The first correction against each other one: the difference after the last click and in
    DSC_AUC, with intervals resampling structures and subjects; the shipped example counts as
    the index's MNI152 subject, which it replaces."""
    index = tmp_path / "index.json"
    index.write_text(json.dumps({"cases": {
        "ct": {"split": "test", "dimension": 3, "modality": "CT", "image": "ct/i.nii.gz", "label": "ct/l.nii.gz",
               "subject": "patient1"},
        "ct_spine": {"split": "test", "dimension": 3, "modality": "CT", "image": "s/i.nii.gz", "label": "s/l.nii.gz",
                     "subject": "patient1"},
        "mni152_example": {"split": "test", "dimension": 3, "modality": "MR", "image": "m/i.nii.gz",
                           "label": "m/l.nii.gz", "subject": "mni152"},
        "train": {"split": "train", "dimension": 3, "modality": "MR", "image": "t/i.nii.gz", "label": "t/l.nii.gz"}}}))
    found = {name: (preset, subject) for name, _, _, preset, subject in tool.cases(index, "test")}
    assert found == {"ct": ("auto", "patient1"), "ct_spine": ("auto", "patient1"),
                     "shipped_example": ("mr", "mni152")}

    def entry(trained, edit):
        return {"trained-edit": {"dsc": [0.5, trained], "dsc_auc": trained},
                "edit": {"dsc": [0.5, edit], "dsc_auc": edit}}

    report = {"cases": {
        "ct": {"subject": "patient1", "labels": {"1": entry(0.8, 0.7), "2": entry(0.6, 0.6)}},
        "ct_spine": {"subject": "patient1", "labels": {"3": entry(0.7, 0.65)}},
        "shipped_example": {"subject": "mni152", "labels": {"1": entry(0.9, 0.95), "2": entry(0.85, 0.8)}}}}
    d = tool.differences(report, ["trained-edit", "edit"])["edit"]
    last = d["after_last_click"]["by_structure"]
    assert last["mean"] == pytest.approx((0.1 + 0 + 0.05 - 0.05 + 0.05) / 5)
    assert (last["samples"], last["higher"], last["lower"]) == (5, 3, 1)
    assert d["after_last_click"]["by_subject"]["groups"] == 2  # two CT cases, one patient
    assert d["dsc_auc"]["by_structure"]["mean"] == pytest.approx(last["mean"])
    (step,) = tool.click_steps_of(report, "edit")  # one click: box 0.5 -> 0.7, 0.6, 0.65, 0.95, 0.8
    assert step["mean"] == pytest.approx(0.24) and (step["higher"], step["lower"]) == (5, 0)
