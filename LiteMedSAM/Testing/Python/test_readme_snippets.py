"""The scripting examples of LiteMedSAM/README.md: the headless one runs as written (a child
process, from the repository root); the in-Slicer one runs with the three calls that need the
Slicer application (loadVolume, saveNode, the module import) replaced by their headless
equivalents. Both must segment the shipped example's left temporal lobe from the ROI's slice."""

from __future__ import annotations

import re
import subprocess
import sys
import types

import numpy as np
import SimpleITK as sitk
import slicerio
from conftest import REPO_ROOT

from LiteMedSAMLib.evaluation.metrics import dice
from LiteMedSAMLib.example import EXAMPLE_LABEL

README = REPO_ROOT / "LiteMedSAM" / "README.md"


def snippet(marker: str) -> str:
    """The ```python block that follows ``<!-- {marker} example ...-->`` in the README."""
    match = re.search(rf"<!-- {marker} example[^>]*-->\s*```python\n(.*?)```", README.read_text(), re.S)
    assert match, f"no {marker} example in {README}"
    return match.group(1)


def checkResult(path) -> None:
    """One segment named after the ROI; by default (``sliceExtent="automatic"``) swept from the
    ROI's centre slice (11) up and down until the lobe ends; and the lobe it should be."""
    seg = slicerio.read_segmentation(str(path))
    assert [s["name"] for s in seg["segments"]] == ["Left temporal lobe"]
    mask = slicerio.extract_segments(seg, [("Left temporal lobe", 1)])["voxels"]
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(EXAMPLE_LABEL))).transpose(2, 1, 0) == 1
    assert mask.shape == truth.shape  # the example's grid (the file is written on it)
    slices = sorted(set(np.nonzero(mask)[2]))
    assert {10, 11, 12} <= set(slices) and slices == list(range(slices[0], slices[-1] + 1))
    print(f"slices {slices[0]}-{slices[-1]}, DSC {dice(mask, truth):.3f}, "
          f"on slices 10-12 {dice(mask[:, :, 10:13], truth[:, :, 10:13]):.3f}")
    assert dice(mask[:, :, 10:13], truth[:, :, 10:13]) > 0.5
    assert dice(mask, truth) > 0.5


def test_headless_snippet_runs_as_written(tmp_path):
    code = snippet("headless").replace('"output', f'"{tmp_path}/output')
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    checkResult(tmp_path / "output" / "example_litemedsam.seg.nrrd")


def test_in_slicer_snippet_logic(scene, tmp_path, monkeypatch):
    import slicer

    from LiteMedSAMLogic import LiteMedSAMLogic

    def loadVolume(path):
        return slicer.modules.volumes.logic().AddArchetypeVolume(path, "volume")

    def saveNode(node, path):
        storage = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
        storage.SetFileName(path)
        return bool(storage.WriteData(node))

    monkeypatch.setattr(slicer.util, "loadVolume", loadVolume, raising=False)
    monkeypatch.setattr(slicer.util, "saveNode", saveNode, raising=False)
    class HeadlessLogic(LiteMedSAMLogic):
        def process(self, *args, **kwargs):  # showing the result needs the application's views
            return super().process(*args, showResult=False, **kwargs)

    monkeypatch.setitem(sys.modules, "LiteMedSAM", types.SimpleNamespace(LiteMedSAMLogic=HeadlessLogic))
    output = tmp_path / "example_litemedsam.seg.nrrd"
    code = snippet("in-slicer").replace("/tmp/example_litemedsam.seg.nrrd", str(output))
    exec(compile(code, "README in-Slicer example", "exec"), {})
    checkResult(output)
