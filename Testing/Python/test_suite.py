"""The labelled evaluation suite: box rule, structure selection, index reading, and one real run
on a tiny 4-slice case (the shipped example) with the real model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from tool_module import load_tool

from LiteMedSAMLib.errors import LiteMedSAMError
from LiteMedSAMLib.evaluation import suite


def _synthetic_label() -> tuple[np.ndarray, dict[int, str]]:
    label = np.zeros((12, 40, 40), np.uint8)
    label[2:9, 3:9, 4:9] = 1  # a compact block: kept
    label[1, 20:38, 20] = 2  # two thin strips far apart (a rib cut in two): no box describes it
    label[10, 20, 20:38] = 2
    label[0, 0, 0:3] = 3  # 3 voxels: too small
    names = {1: "block", 2: "strips", 3: "speck", 4: "absent organ"}
    return label, names


def test_box_rule_keeps_compact_and_skips_split_thin_tiny_and_absent():
    label, names = _synthetic_label()
    kept, skipped = suite.select_structures(label, names)
    assert [s.name for s in kept] == ["block"]
    block = kept[0]
    assert block.box == (4, 3, 2, 8, 8, 8)  # x0 y0 z0 x1 y1 z1, inclusive
    assert block.fill == 1.0 and block.components == 1
    reasons = {s.name: s.skip for s in skipped}
    assert "splits into 2 parts" in reasons["strips"]
    assert reasons["speck"] == f"smaller than {suite.MIN_VOXELS} voxels"
    assert reasons["absent organ"] == "absent"


def test_one_thin_component_is_kept_a_split_one_with_a_dominant_part_too():
    label = np.zeros((10, 30, 30), np.uint8)
    idx = np.arange(30)
    label[idx // 3, idx, 5] = 1  # thin diagonal line, one 26-connected part: a box still holds it
    label[2:6, 20:28, 20:28] = 2  # big block ...
    label[9, 0, 0] = 2  # ... with a stray voxel far away: largest part > MIN_LARGEST of the voxels
    kept, skipped = suite.select_structures(label, {1: "line", 2: "block"})
    assert [s.name for s in kept] == ["line", "block"] and not skipped
    assert kept[0].fill < suite.MIN_FILL and kept[1].components == 2


def test_cap_takes_typical_structures_first_then_the_most_compact():
    label = np.zeros((6, 30, 30), np.uint8)
    label[0:6, 0:10, 0:10] = 1
    label[0:6, 0:10, 0:10][:, ::2] = 0  # liver: half filled, but clinically typical
    label[0:3, 15:20, 15:20] = 2  # full block
    label[3:6, 20:30, 0:10] = 3
    label[3:6, 20:30, 0:10][:, ::3] = 0  # less compact block
    names = {1: "liver", 2: "blob", 3: "other blob"}
    kept, skipped = suite.select_structures(label, names, max_structures=2)
    assert [s.name for s in kept] == ["liver", "blob"]
    assert skipped[0].name == "other blob" and "cap of 2" in skipped[0].skip


def test_instances_are_sampled_evenly_with_a_larger_cap_in_2d():
    label = np.zeros((40, 60), np.uint16)
    for v in range(1, 11):
        label[2:7, 5 * v:5 * v + 4] = v
    names = {v: f"nucleus_{v}" for v in range(1, 11)}
    kept, skipped = suite.select_structures(label, names, dimension=2, max_structures=1, instances=True)
    assert [s.value for s in kept] == [1, 4, 7, 10]  # INSTANCE_CAP_2D (4) x the cap, evenly spaced
    assert len(skipped) == 6
    assert kept[0].box == (5, 2, 0, 8, 6, 0)


def test_middle_slice_box_uses_the_nearest_labelled_slice_when_the_middle_is_empty():
    mask = np.zeros((9, 20, 20), bool)
    mask[1:4, 2:6, 3:9] = True
    mask[6:8, 10:15, 11:18] = True  # slice range 1..7, middle 4 is empty; 3 is nearest
    assert suite.middle_slice_box(mask) == (3, 3, 2, 8, 5)
    with pytest.raises(LiteMedSAMError):
        suite.middle_slice_box(np.zeros((3, 4, 4), bool))


def _write_case(folder, case_id, image, label, **meta):
    (folder / case_id).mkdir(parents=True)
    sitk.WriteImage(image, str(folder / case_id / "image.nii.gz"))
    sitk.WriteImage(label, str(folder / case_id / "label.nii.gz"))
    return {"id": case_id, "image": f"{case_id}/image.nii.gz", "label": f"{case_id}/label.nii.gz",
            **meta}


def _write_index(folder, cases):
    (folder / "index.json").write_text(json.dumps({"format": 1, "cases": {c["id"]: c for c in cases}}))


def test_read_index_filters_split_and_dataset_and_reports_problems(tmp_path):
    img = sitk.Image(8, 8, 3, sitk.sitkInt16)
    lab = sitk.Image(8, 8, 3, sitk.sitkUInt8)
    common = dict(modality="CT", dimension=3, labels={"1": "liver"})
    _write_index(tmp_path, [
        _write_case(tmp_path, "a", img, lab, dataset="ds_a", split="test", labels_are_model_output=True, **common),
        _write_case(tmp_path, "b", img, lab, dataset="ds_b", split="train", **common)])
    test = suite.read_index(tmp_path)
    assert [c.case_id for c in test] == ["a"]
    assert test[0].labels == {1: "liver"} and test[0].labels_are_model_output
    assert test[0].image == tmp_path / "a" / "image.nii.gz"
    assert [c.case_id for c in suite.read_index(tmp_path, split="all")] == ["a", "b"]
    assert [c.case_id for c in suite.read_index(tmp_path, split="all", datasets=["ds_b"])] == ["b"]
    with pytest.raises(LiteMedSAMError, match="Unknown dataset nope"):
        suite.read_index(tmp_path, datasets=["nope"])
    with pytest.raises(LiteMedSAMError, match="Unknown split"):
        suite.read_index(tmp_path, split="val")
    (tmp_path / "b" / "label.nii.gz").unlink()
    with pytest.raises(LiteMedSAMError, match="label.nii.gz is missing"):
        suite.read_index(tmp_path, split="train")
    with pytest.raises(LiteMedSAMError, match="fetch the data first"):
        suite.read_index(tmp_path / "empty")


def test_cli_without_data_is_a_clear_error(tmp_path, capsys):
    from LiteMedSAMLib.cli import main

    assert main(["evaluate-suite", "--data", str(tmp_path)]) == 2
    assert "fetch_public_data.py" in capsys.readouterr().err


def test_run_suite_on_a_tiny_case_scores_report_and_plot(tmp_path, example):
    """4 slices of the shipped example, the official pipeline, the real model."""
    _, label, image = example
    z0, z1 = 8, 11
    crop = image[:, :, z0:z1 + 1]
    lab = sitk.GetImageFromArray(label[z0:z1 + 1].astype(np.uint8))
    lab.CopyInformation(crop)
    names = {"1": "left temporal lobe", "2": "right temporal lobe", "3": "cerebellum and brain stem"}
    _write_index(tmp_path, [_write_case(tmp_path, "tiny", crop, lab, dataset="tiny_mr", modality="MR",
                                        dimension=3, split="test", labels=names)])
    report = suite.run_suite(tmp_path, pipelines=["official"])
    assert report["pipelines"] == ["official"]
    (case,) = report["cases"]
    assert case["preset"] == "mr" and not case["labels_are_model_output"]
    assert case["subject"] == "tiny"  # an index without subjects: each case is its own
    rows = case["structures"]
    assert [r["name"] for r in rows] == list(names.values())
    for r in rows:  # each label spans all 4 slices: its 3D bounding box
        gt = label[z0:z1 + 1] == r["label"]
        zz, yy, xx = np.nonzero(gt)
        assert r["box"] == [xx.min(), yy.min(), 0, xx.max(), yy.max(), 3]
    dscs = [r["metrics"]["official"]["dsc"] for r in rows]
    assert all(0.3 < d <= 1 for d in dscs), dscs  # the model segments the lobes, not nothing
    assert case["timing"]["official"]["encoded_slices"] == 4  # each slice encoded once for 3 boxes
    overall = report["summary"]["overall"]["official"]
    assert overall["structures"] == 3
    assert overall["dsc"] == pytest.approx(np.mean(dscs))
    assert report["summary"]["datasets"]["tiny_mr"]["official"]["dsc"] == pytest.approx(np.mean(dscs))
    text = suite.format_report(report)
    assert "tiny / cerebellum and brain stem" in text and "model output" in text
    assert f"{np.mean(dscs):.3f}" in text
    json.loads(json.dumps(report))  # plain JSON
    suite.plot_report(report, tmp_path / "suite.png")
    assert (tmp_path / "suite.png").stat().st_size > 5000


def test_summary_and_table_compare_each_pipeline_with_the_official_one(tmp_path):
    def row(name, official, other):
        return {"label": 1, "name": name, "metrics": {"official": {"dsc": official, "nsd": official},
                                                       "default": {"dsc": other, "nsd": other}}}

    timing = {"official": {"seconds": 2.0, "encoded_slices": 10},
              "default": {"seconds": 1.0, "encoded_slices": 8}}
    report = {"pipelines": ["official", "default"], "split": "test", "start": "box3d", "mode": "exact",
              "tolerance_mm": 2.0, "cases": [
                  {"case": "a", "dataset": "ct", "labels_are_model_output": True, "skipped": [],
                   "structures": [row("liver", 0.5, 0.7), row("spleen", 0.7, 0.7)], "timing": timing},
                  {"case": "b", "dataset": "mr", "labels_are_model_output": False, "skipped": [],
                   "structures": [row("thalamus", 0.9, 0.8)], "timing": timing},
                  {"case": "c", "dataset": "nuclei", "dimension": 2, "labels_are_model_output": False,
                   "skipped": [], "structures": [row("nucleus 1", 0.6, 1.0)], "timing": timing}]}
    summary = suite.summarize(report)
    assert summary["datasets"]["ct"]["default"]["dsc"] == pytest.approx(0.7)
    assert summary["datasets"]["ct"]["official"]["dsc"] == pytest.approx(0.6)
    overall = summary["overall"]["default"]
    assert overall["dsc"] == pytest.approx(3.2 / 4)
    assert overall["dsc_minus_official"] == pytest.approx(3.2 / 4 - 2.7 / 4)
    assert overall["dataset_mean_dsc_minus_official"] == pytest.approx((0.7 + 0.8 + 1.0) / 3 - (0.6 + 0.9 + 0.6) / 3)
    # the structures of 3-D volumes (cases without a dimension count as 3-D): the nucleus left out
    assert overall["volume_structures"] == 3 and overall["volume_dsc"] == pytest.approx(2.2 / 3)
    assert overall["volume_dsc_minus_official"] == pytest.approx(2.2 / 3 - 0.7)
    assert overall["encoded_slices"] == 24 and overall["seconds"] == pytest.approx(3.0)
    report["summary"] = summary
    text = suite.format_report(report)
    volumes = next(line for line in text.splitlines() if line.startswith("structures of 3-D volumes (3)"))
    assert "0.700" in volumes and "0.733" in volumes and "+0.033" in volumes
    assert "ct* (2)" in text  # model-output datasets are marked
    liver = next(line for line in text.splitlines() if "a* / liver" in line)
    assert "+0.200" in liver
    # paired differences with intervals: +0.2, 0, -0.1 on the volumes, +0.4 on the nucleus
    paired = summary["differences"]["default"]
    every, volumes_only = paired["structures"]["by_structure"], paired["volume_structures"]["by_structure"]
    assert every["mean"] == pytest.approx(0.125) and (every["higher"], every["lower"], every["samples"]) == (2, 1, 4)
    assert every["low"] is None  # 4 structures: too few for an interval (test_statistics has them)
    assert volumes_only["mean"] == pytest.approx(0.1 / 3) and volumes_only["samples"] == 3
    assert paired["structures"]["by_subject"]["groups"] == 3  # no subjects recorded: the cases a, b, c
    line = next(line for line in text.splitlines() if line.startswith("default, all structures"))
    assert line.endswith("+0.125 (no interval from 4 structures; 2 higher, 1 lower of 4 structures); "
                         "3 subject(s), too few for an interval")
    # the figure's legend says the same (the interval only where there is one)
    assert suite._legend_label("default", summary["differences"]) == "default\nDSC +0.125 vs official"
    assert suite._legend_label("official", summary["differences"]) == "official"
    with_interval = {"default": {"structures": {"by_structure": {"mean": 0.104, "low": 0.066, "high": 0.172,
                                                                   "samples": 43}}}}
    assert suite._legend_label("default", with_interval).endswith("(95% CI +0.066 to +0.172,\n43 structures)")
    suite.plot_report(report, tmp_path / "p.png")
    assert (tmp_path / "p.png").exists()


def test_compared_model_gets_its_own_columns_and_its_agreement_with_the_main_model(tmp_path, example,
                                                                                   monkeypatch):
    """A second model beside the main one in one run (a student beside its teacher): columns
    ``<model>@<pipeline>``, each structure's mask DSC against the main model's in the same
    pipeline, and the agreement in the summary and the table. The second model here is the
    official weights registered under another name, so the agreement must be exactly 1."""
    from LiteMedSAMLib import registry

    spec = registry.get_spec("litemedsam")
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "copy.pth").symlink_to(registry.find_weights(spec))
    entry = {"title": "copy", "architecture": spec.architecture,
             "weights": {"filename": "copy.pth", "sha256": spec.weights["sha256"]}}
    (folder / "copy.json").write_text(json.dumps({"models": {"litemedsam-copy": entry}}))
    monkeypatch.setenv(registry.MODELS_DIR_ENV, str(folder))
    _, label, image = example
    z0, z1 = 9, 10
    crop = image[:, :, z0:z1 + 1]
    lab = sitk.GetImageFromArray(label[z0:z1 + 1].astype(np.uint8))
    lab.CopyInformation(crop)
    data = tmp_path / "data"
    data.mkdir()
    _write_index(data, [_write_case(data, "tiny", crop, lab, dataset="tiny_mr", modality="MR",
                                    dimension=3, split="test", labels={"3": "cerebellum"})])
    report = suite.run_suite(data, pipelines=["official"], model_name="litemedsam", mode="torch",
                             compare_models=["litemedsam-copy", "litemedsam"])
    assert report["pipelines"] == ["official", "litemedsam-copy@official"]
    assert report["compare_models"] == ["litemedsam-copy"]
    (row,) = report["cases"][0]["structures"]
    other = row["metrics"]["litemedsam-copy@official"]
    assert "dsc_vs_model" not in row["metrics"]["official"]
    assert other["dsc_vs_model"] == 1.0 and other["dsc"] == row["metrics"]["official"]["dsc"] > 0.5
    overall = report["summary"]["overall"]["litemedsam-copy@official"]
    assert overall["dsc_vs_model"] == 1.0 and overall["dsc_vs_model_min"] == 1.0
    assert "Agreement with litemedsam in the same pipeline" in suite.format_report(report)


def test_the_suite_splits_by_subject():
    """No subject has volumes in both splits, and every case id is unique (the index is keyed
    by it): the held-back volumes never train the click decoder or choose a lever."""
    tool = load_tool("fetch_public_data")
    ids = [case.case_id for case in tool.CASES]
    assert len(ids) == len(set(ids))
    splits: dict[str, set[str]] = {}
    for case in tool.CASES:
        splits.setdefault(case.subject, set()).add(case.split)
    assert all(len(s) == 1 for s in splits.values()), splits
    lesions = [c for c in tool.CASES if c.dataset.startswith("radiomics_")]
    assert len({c.subject for c in lesions}) == 5 and {c.split for c in lesions} == {"test"}
    assert {c.modality for c in lesions} == {"MR", "CT"} and not any(c.labels_are_model_output for c in lesions)


def test_the_lesion_source_is_found_on_the_index_page_by_name_and_checksum():
    tool = load_tool("fetch_public_data")
    sha = tool.RADIOMICS_SHA256
    page = ('<a href="https://files.example/p/pyradiomics-3.0.1.tar.gz#sha256=00">pyradiomics-3.0.1.tar.gz</a>\n'
            f'<a href="https://files.example/p/pyradiomics-3.1.0.tar.gz#sha256={sha}">pyradiomics-3.1.0.tar.gz</a>')
    assert tool.sdist_link(page, "pyradiomics-3.1.0.tar.gz", sha) == "https://files.example/p/pyradiomics-3.1.0.tar.gz"
    with pytest.raises(SystemExit, match="expected sha256"):
        tool.sdist_link(page.replace(sha, "ab" * 32), "pyradiomics-3.1.0.tar.gz", sha)
    with pytest.raises(SystemExit, match="not listed"):
        tool.sdist_link(page, "pyradiomics-9.9.tar.gz", sha)
