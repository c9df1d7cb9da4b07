"""The window-choice study's pieces (tools/study_window_choice.py, #11): the start-slice features
it records and the exact replay of a choice rule on recorded rows."""

from __future__ import annotations

import numpy as np
import torch
from tool_module import load_tool

from LiteMedSAMLib.predictor import SlicePrediction

study = load_tool("study_window_choice")


class _View:
    """Answers every box prompt with a fixed mask and logits (what a predictor view returns)."""

    def __init__(self, mask: np.ndarray, logits: np.ndarray, iou: float) -> None:
        self.result = SlicePrediction(mask.astype(np.uint8), iou, torch.as_tensor(logits)[None, None])

    def box_to_model(self, box2d):
        return np.asarray(box2d, dtype=float)

    def predict_model_box(self, z, box_model):
        return self.result


def test_features_of_a_mask_that_is_the_bright_object_in_its_box():
    raw = np.zeros((40, 40))
    raw[10:20, 10:20] = 100.0  # a bright square on a dark slice
    mask = raw > 0
    logits = np.where(np.pad(mask, ((0, 216), (0, 216))), 5.0, -5.0)
    logits[0, 0] = 0.0  # one pixel between the thresholds -1 and +1
    feats, got = study.slice_features(_View(mask, logits, 0.9), raw, 0, (10, 10, 19, 19))
    assert np.array_equal(got, mask)
    assert feats["iou"] == 0.9 and feats["fit"] == 1.0 and feats["area"] == 1.0
    assert feats["stability"] == 100 / 101
    assert feats["contrast"] == 0.0  # no box pixel outside the mask to compare with
    # in a looser box the mask is 100 of 196 pixels, all bright against a dark rest
    feats, _ = study.slice_features(_View(mask, logits, 0.9), raw, 0, (8, 8, 21, 21))
    assert feats["area"] == 100 / 196 and feats["contrast"] > 100 and feats["edge"] > 1.0
    assert 0 < feats["fit"] < 1


def test_a_rule_replays_the_recorded_windows_exactly():
    def row(iou_v, iou_w, dsc_v, dsc_w):
        side = {"fit": 0.5, "stability": 0.8, "area": 0.4, "contrast": 1.0, "edge": 1.0}
        return {"volume": {**side, "iou": iou_v, "dsc": dsc_v}, "window": {**side, "iou": iou_w, "dsc": dsc_w}}

    rows = [row(0.80, 0.90, 0.5, 0.7), row(0.90, 0.91, 0.9, 0.6), row(0.70, 0.60, 0.8, 0.1)]
    keep = study.choose(rows, {"iou": 1.0, "fit": 1.0}, 0.02)
    assert keep.tolist() == [True, False, False]  # the second wins by 0.01 only: not kept
    assert np.isclose(study.mean_dsc(rows, keep), (0.7 + 0.9 + 0.8) / 3)
    assert study.choose(rows, {"iou": 1.0}, 0.0).tolist() == [True, True, False]


def test_the_chosen_rule_is_the_simplest_of_those_tied_with_the_best():
    results = [(0.700, 3, {"iou": 1, "fit": 1, "edge": 0.1}, 0.0, 5),
               (0.6996, 2, {"iou": 1, "fit": 1}, 0.02, 4),  # within 0.0005: tied, fewer features
               (0.690, 1, {"iou": 1}, 0.0, 6)]
    assert study.simplest_best(results) == results[1]
    assert study.simplest_best(results[:1] + results[2:]) == results[0]


def test_a_gate_keeps_the_volume_mapping_unexamined_where_it_already_scores_high():
    def row(iou_v, fit_v, iou_w, fit_w):
        return {"volume": {"iou": iou_v, "fit": fit_v, "dsc": 0.8}, "window": {"iou": iou_w, "fit": fit_w, "dsc": 0.6}}

    rows = [row(0.90, 0.80, 0.95, 0.90), row(0.60, 0.50, 0.90, 0.90), row(0.60, 0.50, 0.50, 0.50)]
    assert study.choose(rows, *study.SHIPPED).tolist() == [True, True, False]
    keep, tried = study.gated(rows, 1.5)  # the first scores 1.7 with the volume's mapping
    assert tried.tolist() == [False, True, True] and keep.tolist() == [False, True, False]
    assert np.isclose(study.mean_dsc(rows, keep), (0.8 + 0.6 + 0.8) / 3)


def test_extent_features_do_not_punish_a_mask_for_being_smaller_than_its_union_box():
    mask = np.zeros((40, 40), bool)
    mask[10:20, 10:30] = True  # 20 wide, 10 high
    assert study.extent(mask, (10, 10, 29, 29)) == {"within": 1.0, "span": 1.0}  # reaches across x
    got = study.extent(mask, (0, 0, 39, 39))
    assert got["within"] == 1.0 and got["span"] == 0.5
    leaking = study.extent(mask, (10, 10, 19, 19))  # half the mask lies right of the box
    assert leaking["within"] == 0.5 and leaking["span"] == 1.0  # capped at the box
    assert study.extent(np.zeros_like(mask), (0, 0, 9, 9)) == {"within": 0.0, "span": 0.0}
