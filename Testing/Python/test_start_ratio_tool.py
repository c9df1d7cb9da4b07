"""tools/start_ratio.py (#11): the 2D start's mean DSC against the 3D box's, paired by case and
structure, with intervals; reports of the wrong kind are named."""

from __future__ import annotations

import json

import pytest
from tool_module import load_tool

from LiteMedSAMLib.errors import LiteMedSAMError

tool = load_tool("start_ratio")


def _report(start, scores, split="test"):
    """scores: {case: (subject, dimension, {structure: dsc})}"""
    return {"start": start, "split": split, "pipelines": ["official", "default"], "cases": [
        {"case": case, "subject": subject, "dimension": dim,
         "structures": [{"name": n, "metrics": {"official": {"dsc": 0.1}, "default": {"dsc": d}}}
                        for n, d in structures.items()]}
        for case, (subject, dim, structures) in scores.items()]}


def test_the_ratio_pairs_structures_and_counts_those_reaching_the_goal(tmp_path, capsys):
    box3d = _report("box3d", {"ct": ("p1", 3, {"liver": 0.9, "spleen": 0.8, "aorta": 0.7}),
                              "spine": ("p1", 3, {"L1": 0.6, "L2": 0.5}),
                              "mr": ("p2", 3, {"liver": 0.8}),
                              "cells": ("c", 2, {"n1": 0.9, "n2": 0.7})})
    box2d = _report("box2d", {"ct": ("p1", 3, {"liver": 0.9, "spleen": 0.6, "aorta": 0.7}),
                              "spine": ("p1", 3, {"L1": 0.3, "L2": 0.5}),
                              "mr": ("p2", 3, {"liver": 0.8, "extra": 0.2}),  # not in the 3D report
                              "cells": ("c", 2, {"n1": 0.9, "n2": 0.7})})
    rows = tool.paired_rows(box3d, box2d, "default")
    assert len(rows) == 8 and {r["subject"] for r in rows} == {"p1", "p2", "c"}
    summary = tool.summarize(rows)
    volumes = summary["volume_structures"]
    assert volumes["count"] == 6 and volumes["reaching_goal"] == 4  # the spleen and L1 fall short
    assert volumes["by_structure"]["ratio"] == pytest.approx(3.8 / 4.3)
    assert summary["structures"]["by_structure"]["ratio"] == pytest.approx(5.4 / 5.9)
    assert volumes["by_subject"]["groups"] == 2 and volumes["by_subject"]["low"] is None  # too few subjects
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(box3d))
    b.write_text(json.dumps(box2d))
    assert tool.main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "structures of 3-D volumes (6): 0.884 (95% CI" in out and "4 of 6 reach 0.95" in out


def test_reports_of_the_wrong_kind_are_named():
    box3d = _report("box3d", {"ct": ("p1", 3, {"liver": 0.9})})
    with pytest.raises(LiteMedSAMError, match="expected a --start box2d report"):
        tool.paired_rows(box3d, box3d, "default")
    with pytest.raises(LiteMedSAMError, match="pipeline 'default\\+flip' is not in"):
        tool.paired_rows(box3d, _report("box2d", {"ct": ("p1", 3, {"liver": 0.9})}), "default+flip")
    with pytest.raises(LiteMedSAMError, match="different splits"):
        tool.paired_rows(box3d, _report("box2d", {"ct": ("p1", 3, {"liver": 0.9})}, split="train"), "default")
    with pytest.raises(LiteMedSAMError, match="share no structure"):
        tool.paired_rows(box3d, _report("box2d", {"mr": ("p2", 3, {"liver": 0.9})}), "default")
