"""Training/ end to end on a CPU: real slices of the shipped example, the official LiteMedSAM as
teacher, a tiny RepViT student (Training/configs/ci_tiny.json), both stages, export, registry.

A few steps prove the pipeline, not the model: losses must go down, the export must load
strictly through ``LITEMEDSAM_MODELS_DIR`` and give a non-empty mask; quality is not asked.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from LiteMedSAMLib import registry
from LiteMedSAMLib.example import EXAMPLE_IMAGE, EXAMPLE_LABEL
from Training import prepare, run
from Training.common import DataError
from Training.data import SliceDataset, prepare_npz, prepare_pair

CONFIG = "Training/configs/ci_tiny.json"


def _losses(path):
    with open(path, newline="") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    slices, out = root / "slices", root / "run"
    assert prepare.main(["--pair", str(EXAMPLE_IMAGE), str(EXAMPLE_LABEL), "--preset", "mr",
                         "--max-slices", "4", "-o", str(slices)]) == 0
    assert run.main(["--config", CONFIG, "--data", str(slices), "--output", str(out), "--device", "cpu"]) == 0
    return slices, out


def test_prepared_slices_follow_the_official_preprocessing(trained):
    slices, _ = trained
    paths = sorted(slices.glob("*.npz"))
    assert len(paths) == 4
    image = sitk.GetArrayFromImage(sitk.ReadImage(str(EXAMPLE_IMAGE)))
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(EXAMPLE_LABEL)))
    from LiteMedSAMLib.preprocessing import intensity_mapping

    with np.load(paths[0]) as data:
        z = int(paths[0].stem.split("_z")[1])
        assert np.array_equal(data["img"], intensity_mapping(image, "mr").apply(image[z]))
        assert np.array_equal(data["gt"], label[z]) and data["gt"].dtype == np.uint16
    sample = SliceDataset(slices)[0]
    assert sample["image"].shape == (3, 256, 256) and sample["mask"].shape == (1, 256, 256)
    x0, y0, x1, y1 = sample["box"].tolist()
    ys, xs = np.nonzero(sample["mask"][0].numpy())
    # the jittered box holds the object and is at most bbox_shift (5) larger on each side
    assert x0 <= xs.min() <= x0 + 5 and y0 <= ys.min() <= y0 + 5
    assert x1 - 5 <= xs.max() <= x1 and y1 - 5 <= ys.max() <= y1


def test_both_stages_reduce_their_losses_and_log_them(trained):
    _, out = trained
    for stage in ("distill", "finetune"):
        losses = _losses(out / stage / "log.csv")
        assert len(losses) >= 5 and all(np.isfinite(losses))
        assert np.mean(losses[-2:]) < np.mean(losses[:2]), (stage, losses)
        assert (out / stage / "log.png").stat().st_size > 1000
        assert (out / stage / "last.pth").exists()
    assert len(list((out / "teacher_embeddings").glob("*.pt"))) == 4


def test_export_loads_through_the_registry_and_segments(trained, monkeypatch, example):
    _, out = trained
    export = out / "export"
    from manifest_schema import manifest_errors

    assert manifest_errors(json.loads((export / "ci-repvit-tiny.json").read_text())) == []  # the schema holds
    manifest = json.loads((export / "ci-repvit-tiny.json").read_text())["models"]["ci-repvit-tiny"]
    assert manifest["architecture"]["encoder"]["reparameterized"] is True
    monkeypatch.setenv(registry.MODELS_DIR_ENV, str(export))
    rows = {r["name"]: r for r in registry.describe_models()}
    assert rows["ci-repvit-tiny"]["weights"] == str(export / "ci-repvit-tiny.pth")
    model = registry.load_model("ci-repvit-tiny")  # strict loading + SHA-256 check
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.image_encoder.modules())
    from LiteMedSAMLib.predictor import VolumePredictor

    image, label, _ = example
    predictor = VolumePredictor(model)
    predictor.set_volume(image, preset="mr")
    z = int(sorted((out.parent / "slices").glob("*.npz"))[1].stem.split("_z")[1])  # a training slice
    ys, xs = np.nonzero(label[z] == 3)
    result = predictor.predict_slice(z, (xs.min(), ys.min(), xs.max(), ys.max()))
    assert result.mask.shape == image.shape[1:] and result.mask.sum() > 0


def test_resume_continues_from_the_checkpoint(trained, tmp_path):
    slices, out = trained
    from Training.common import load_config, setup_runtime
    from Training.finetune import run_finetune

    cfg = load_config(CONFIG, {"output": str(out), "finetune.max_steps": 7})
    before = len(_losses(out / "finetune" / "log.csv"))
    run_finetune(cfg, slices, setup_runtime("cpu"), resume=True)
    rows = list(csv.DictReader(open(out / "finetune" / "log.csv")))
    assert len(rows) == before + 1 and rows[-1]["step"] == "7"


def test_bad_data_is_reported_clearly(tmp_path):
    img = np.zeros((3, 20, 20), np.int16)
    img[:, 5:15, 5:15] = 100
    label = np.zeros((3, 20, 20), np.uint8)
    label[:, 5:15, 5:15] = 1

    def write(name, array):
        path = tmp_path / name
        sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
        return path

    with pytest.raises(DataError, match="image shape .* and label shape .* do not match"):
        prepare_pair(write("a.nii.gz", img), write("a_label.nii.gz", label[:, :10]), tmp_path / "o")
    with pytest.raises(DataError, match="label is empty"):
        prepare_pair(write("b.nii.gz", img), write("b_label.nii.gz", np.zeros_like(label)), tmp_path / "o")
    with pytest.raises(DataError, match="non-integer values"):
        prepare_pair(write("c.nii.gz", img), write("c_label.nii.gz", label * 0.5), tmp_path / "o")
    np.savez(tmp_path / "bad.npz", imgs=img.astype(np.uint8))
    with pytest.raises(DataError, match=r"missing arrays \['gts'\]"):
        prepare_npz(tmp_path / "bad.npz", tmp_path / "o")
    np.savez(tmp_path / "float.npz", imgs=img.astype(np.float32), gts=label)
    with pytest.raises(DataError, match="must already be uint8"):
        prepare_npz(tmp_path / "float.npz", tmp_path / "o")
    # the challenge format itself works: imgs, gts, spacings
    np.savez(tmp_path / "CT_case.npz", imgs=img.astype(np.uint8), gts=label, spacings=np.array([1.0, 1.0, 1.0]))
    assert len(prepare_npz(tmp_path / "CT_case.npz", tmp_path / "o", min_pixels=10)) == 3
    with pytest.raises(DataError, match="no prepared slices"):
        SliceDataset(tmp_path / "nothing")
