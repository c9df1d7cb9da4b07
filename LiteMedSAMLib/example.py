"""The example case shipped with the library: a real brain MR and boxes around three structures.

``data/mni152_t1_lower_brain.nii.gz`` is a 158 x 170 x 28 crop of the MNI ICBM 2009a
symmetric T1 template (1 mm, skull-stripped; from nilearn's bundled data, built by
``tools/make_example_data.py``). ``data/mni152_t1_lower_brain_label.nii.gz`` is its reference
label: the template's brain mask split into the left temporal lobe (1), the right temporal
lobe (2) and the cerebellum with the brain stem (3) on slices 0-20, where they are apart.
It serves the demo (``litemedsam demo``), the tests and the README figure.
"""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).with_name("data")
EXAMPLE_IMAGE = DATA_DIR / "mni152_t1_lower_brain.nii.gz"
EXAMPLE_LABEL = DATA_DIR / "mni152_t1_lower_brain_label.nii.gz"
EXAMPLE_PRESET = "mr"

# Boxes a user would draw, as inclusive voxel indices (x0, y0, z0, x1, y1, z1), by name.
# Label value of each structure in EXAMPLE_LABEL = its position here + 1.
EXAMPLE_BOXES: dict[str, tuple[int, int, int, int, int, int]] = {
    "left temporal lobe": (14, 79, 2, 62, 130, 20),
    "right temporal lobe": (94, 79, 2, 142, 130, 20),
    "cerebellum and brain stem": (22, 10, 0, 134, 91, 20),
}
