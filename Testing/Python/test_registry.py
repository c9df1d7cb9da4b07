"""The manifest-driven model registry: lookup, checksums and clear errors."""

from __future__ import annotations

import json

import pytest
import torch

from LiteMedSAMLib import registry
from LiteMedSAMLib.errors import LiteMedSAMError


def _manifest(folder, name, filename, sha256=None, architecture=None):
    builtin = json.loads(registry.BUILTIN_MANIFEST.read_text())["models"]["litemedsam"]
    entry = {"title": name, "architecture": architecture or builtin["architecture"],
             "weights": {"filename": filename, "sha256": sha256,
                         "install": "litemedsam-train export ..."},
             "license": "Apache-2.0"}
    (folder / f"{name}.json").write_text(json.dumps({"models": {name: entry}}))


def test_builtin_manifest_has_the_official_model():
    spec = registry.get_spec()
    assert spec.name == "litemedsam" and spec.license == "Apache-2.0"
    assert spec.weights["sha256"] == "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"
    path = registry.find_weights(spec)
    registry.verify_weights(path, spec)
    assert path.name == "lite_medsam.pth"


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(LiteMedSAMError, match="unknown model 'sam-huge'.*litemedsam"):
        registry.get_spec("sam-huge")


def test_missing_weights_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv(registry.MODELS_DIR_ENV, str(tmp_path))
    _manifest(tmp_path, "student", "student.pth", sha256="0" * 64)
    with pytest.raises(LiteMedSAMError, match="not installed.*litemedsam-train export"):
        registry.load_model("student")


def test_corrupt_registered_weights_fail_the_checksum(tmp_path, monkeypatch):
    monkeypatch.setenv(registry.MODELS_DIR_ENV, str(tmp_path))
    (tmp_path / "student.pth").write_bytes(b"garbage")
    _manifest(tmp_path, "student", "student.pth", sha256="0" * 64)
    with pytest.raises(LiteMedSAMError, match="corrupt or not the registered release"):
        registry.load_model("student")


def test_extra_manifest_model_loads_and_checks_architecture(tmp_path, monkeypatch, model):
    monkeypatch.setenv(registry.MODELS_DIR_ENV, str(tmp_path))
    weights = tmp_path / "copy.pth"
    torch.save(model.state_dict(), weights)
    _manifest(tmp_path, "copy", "copy.pth", sha256=registry.file_sha256(weights))
    loaded = registry.load_model("copy")
    assert torch.equal(loaded.prompt_encoder.no_mask_embed.weight, model.prompt_encoder.no_mask_embed.weight)
    assert "copy" in registry.available_models()
    # the same weights declared with a smaller decoder do not fit: a clear error, not a torch trace
    arch = json.loads(json.dumps(model.spec.architecture))
    arch["decoder"]["transformer_depth"] = 1
    _manifest(tmp_path, "shallow", "copy.pth", sha256=registry.file_sha256(weights), architecture=arch)
    with pytest.raises(LiteMedSAMError, match="does not fit the architecture of model 'shallow'.*unexpected keys"):
        registry.load_model("shallow")


def test_invalid_manifest_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv(registry.MODELS_DIR_ENV, str(tmp_path))
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(LiteMedSAMError, match="broken.json is not valid"):
        registry.available_models()


def test_checkpoint_without_state_dict(tmp_path):
    path = tmp_path / "empty.pth"
    torch.save({}, path)
    with pytest.raises(LiteMedSAMError, match="holds no state dict"):
        registry.read_state_dict(path)
    with pytest.raises(LiteMedSAMError, match="weights file not found"):
        registry.read_state_dict(tmp_path / "nothing.pth")
