"""Fixtures for testing the LiteMedSAM Slicer module headless (PyPI ``slicer-core``, no Qt).

Run from the repository root: ``python -m pytest LiteMedSAM/Testing/Python``.
The scene bootstrap follows the project's verified notes (docs: slicer-headless): the
application logic first, then the module logics Slicer's Python utilities look up through
``slicer.modules.<name>.logic()``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import SimpleITK as sitk

MODULE_DIR = Path(__file__).resolve().parents[2]  # LiteMedSAM/
REPO_ROOT = MODULE_DIR.parent
for path in (str(MODULE_DIR), str(REPO_ROOT)):
    if path not in sys.path:
        sys.path.insert(0, path)

from LiteMedSAMLogic.headless import makeScene  # noqa: E402 (after the path set-up; tests import it from here)

MNI_T1 = "datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


@pytest.fixture(scope="session", autouse=True)
def _deterministicThreads():
    import torch

    torch.set_num_threads(2)  # same float results run to run (as the library's tests)


@pytest.fixture
def scene():
    mrmlScene = makeScene()
    yield mrmlScene
    mrmlScene.Clear(1)


@pytest.fixture(scope="session")
def mniT1() -> sitk.Image:
    """The MNI152 2009a T1 template shipped by nilearn (197 x 233 x 189, 1 mm, skull-stripped)."""
    folder = importlib.util.find_spec("nilearn").submodule_search_locations[0]
    return sitk.ReadImage(str(Path(folder) / MNI_T1), sitk.sitkFloat32)


@pytest.fixture(scope="session")
def logic():
    """One logic for the session: it caches the model and slice embeddings like the module does."""
    from LiteMedSAMLogic import LiteMedSAMLogic

    return LiteMedSAMLogic(mode="exact")  # masks compared bit for bit with the library's exact mode


@pytest.fixture(scope="session")
def model(logic):
    return logic._loadModel(logic.defaultModelName())

