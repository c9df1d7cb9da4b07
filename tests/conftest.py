"""Shared fixtures: the model is loaded once per test session (loading and encoding are
the slow parts on a CPU), the example case is read once."""

from __future__ import annotations

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

