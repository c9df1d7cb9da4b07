"""Build the example volume shipped in ``LiteMedSAMLib/data`` from nilearn's MNI template.

Run once by maintainers (needs ``pip install nilearn``); the outputs are committed because
they are small (~250 KB) and make the demo and the tests work on a plain install.

Source: the MNI ICBM 2009a nonlinear symmetric T1 template (skull-stripped, 1 mm) as
shipped by nilearn (``nilearn/datasets/data``). The crop holds the lower brain: the two
temporal lobes and the cerebellum with the brain stem, which are separate objects on these
axial slices. The reference label is the template's own brain mask (voxels > 0, holes
filled) split into its 3D connected components over slices where they do not touch:
1 = the temporal lobe on the image's left (low x index), 2 = the other temporal lobe,
3 = cerebellum and brain stem.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi
import SimpleITK as sitk

CROP_ZYX = (slice(18, 46), slice(30, 200), slice(20, 178))  # template voxels (1 mm)
LABELLED_SLICES = slice(0, 21)  # crop slices where the three objects are apart (template z 18..38)


def main() -> None:
    data = Path(importlib.util.find_spec("nilearn").submodule_search_locations[0]) / "datasets" / "data"
    t1 = sitk.ReadImage(str(data / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"))
    z, y, x = CROP_ZYX
    crop = sitk.RegionOfInterest(t1, [x.stop - x.start, y.stop - y.start, z.stop - z.start],
                                 [x.start, y.start, z.start])
    array = sitk.GetArrayFromImage(crop)
    brain = np.zeros(array.shape, bool)
    for k in range(LABELLED_SLICES.start, LABELLED_SLICES.stop):
        brain[k] = ndi.binary_fill_holes(array[k] > 0)
    components, _ = ndi.label(brain)
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    biggest = np.argsort(sizes)[::-1][:3]
    cerebellum = biggest[0]
    lobes = sorted(biggest[1:], key=lambda c: np.where(components == c)[2].mean())
    label = np.zeros(array.shape, np.uint8)
    for value, component in enumerate([*lobes, cerebellum], start=1):
        label[components == component] = value

    out = Path(__file__).resolve().parents[1] / "LiteMedSAMLib" / "data"
    label_img = sitk.GetImageFromArray(label)
    label_img.CopyInformation(crop)
    sitk.WriteImage(crop, str(out / "mni152_t1_lower_brain.nii.gz"), useCompression=True)
    sitk.WriteImage(label_img, str(out / "mni152_t1_lower_brain_label.nii.gz"), useCompression=True)
    print("wrote", out, crop.GetSize(), np.bincount(label.ravel()))


if __name__ == "__main__":
    main()
