"""Shared fixtures: the model is loaded once per test session (loading and encoding are
the slow parts on a CPU), the example case is read once."""

from __future__ import annotations

import types

import pytest
import SimpleITK as sitk
import torch


@pytest.fixture(scope="session", autouse=True)
def _deterministic_threads():
    # Same thread count for every run, so that float results are reproducible.
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def model():
    from LiteMedSAMLib.registry import load_model

    return load_model("litemedsam")


@pytest.fixture(scope="session")
def official():
    from official_oracle import official_model

    return official_model()


@pytest.fixture(scope="session")
def example():
    """(image array [z, y, x] uint8, label array, SimpleITK image) of the shipped example."""
    from LiteMedSAMLib.example import EXAMPLE_IMAGE, EXAMPLE_LABEL

    image = sitk.ReadImage(str(EXAMPLE_IMAGE))
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(EXAMPLE_LABEL)))
    return sitk.GetArrayFromImage(image), label, image



@pytest.fixture()
def slicer_scene():
    """A headless MRML scene (PyPI slicer-core) with the Volumes, Segmentations and Markups
    logics, bootstrapped as shared/notes/slicer-headless.md verified; ``slicer.mrmlScene`` and
    ``slicer.modules`` point at it for the test's duration. Yields (slicer, scene, app, logics)."""
    slicer = pytest.importorskip("slicer")
    scene = slicer.vtkMRMLScene()
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    app.GetColorLogic().SetMRMLScene(scene)
    app.GetColorLogic().AddDefaultColorNodes()
    logics = {}
    for name, logic in [("Colors", app.GetColorLogic()),
                        ("Volumes", slicer.vtkSlicerVolumesLogic()),
                        ("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic()),
                        ("Markups", slicer.vtkSlicerMarkupsLogic())]:
        logic.SetMRMLApplicationLogic(app)
        logic.SetMRMLScene(scene)
        app.SetModuleLogic(name, logic)
        logics[name.lower()] = logic
    previous = (getattr(slicer, "mrmlScene", None), getattr(slicer, "modules", None))
    slicer.mrmlScene = scene
    slicer.modules = types.SimpleNamespace(
        **{key: types.SimpleNamespace(logic=lambda lg=lg: lg) for key, lg in logics.items()})
    yield slicer, scene, app, logics
    scene.Clear(1)
    slicer.mrmlScene, slicer.modules = previous
