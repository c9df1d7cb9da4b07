"""Build a second labelled case for ``litemedsam evaluate-clicks``: the lateral ventricles.

The shipped example's structures are bright and the model under-segments them, so its click
protocol gives only positive clicks. The lateral ventricles are dark on T1, the model spills
into the bright tissue around them, and the protocol then gives negative clicks too. Built from
nilearn's MNI ICBM 2009a template (T1 with gray and white matter probability maps): cerebrospinal
fluid = brain voxels where gray + white matter probability < 0.3; the two largest 3D components
of it in a central crop are the left and right lateral ventricles (labels 1 and 2).

    python tools/make_click_cases.py OUTPUT_FOLDER   # writes ventricles_t1.nii.gz, ventricles_label.nii.gz
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi
import SimpleITK as sitk

CROP_START = (50, 70, 88)  # template voxels (x, y, z), 1 mm
CROP_SIZE = (100, 100, 20)


def main(folder: Path) -> None:
    data = Path(importlib.util.find_spec("nilearn").submodule_search_locations[0]) / "datasets" / "data"
    read = lambda name: sitk.RegionOfInterest(  # noqa: E731
        sitk.ReadImage(str(data / f"mni_icbm152_{name}_tal_nlin_sym_09a_converted.nii.gz")), CROP_SIZE, CROP_START)
    t1, gm, wm = read("t1"), read("gm"), read("wm")
    tissue = sitk.GetArrayFromImage(gm) + sitk.GetArrayFromImage(wm)
    csf = (sitk.GetArrayFromImage(t1) > 0) & (tissue < 0.3)
    components, _ = ndi.label(csf)
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    largest = np.argsort(sizes)[::-1][:2]
    centres = [np.nonzero(components == c)[2].mean() for c in largest]
    label = np.zeros(csf.shape, np.uint8)
    for value, c in enumerate(sorted(largest, key=lambda c: centres[list(largest).index(c)]), start=1):
        label[components == c] = value
    out = sitk.GetImageFromArray(label)
    out.CopyInformation(t1)
    folder.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(t1, str(folder / "ventricles_t1.nii.gz"))
    sitk.WriteImage(out, str(folder / "ventricles_label.nii.gz"))
    print(f"{folder}: labels 1, 2 with {[(label == v).sum() for v in (1, 2)]} voxels")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "output/click_cases"))
