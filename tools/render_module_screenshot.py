"""Render the README/Extensions Index screenshot of the Slicer module: a real result, headless.

Runs ``LiteMedSAMLogic.process`` on MRML nodes (slicer-core, no Slicer application) with two ROI
boxes on the MNI152 T1 template (nilearn) and draws the axial slice the way Slicer's red slice
view shows it (radiological: patient right on the left, anterior up), with the segments and the
ROI boxes. Run from the repository root:

    python tools/render_module_screenshot.py [output.png]
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "LiteMedSAM"), str(ROOT / "LiteMedSAM" / "Testing" / "Python"), str(ROOT)]

OUTPUT = ROOT / "Screenshots" / "LiteMedSAM-slice-view.png"
CROP_START, CROP_SIZE = (50, 70, 90), (100, 100, 10)  # template x, y, z (as the tests)
# voxel boxes in the crop (i0, j0, k0, i1, j1, k1): the two lateral ventricles
BOXES = {
    "Left ventricle": (26, 26, 3, 44, 73, 7),
    "Right ventricle": (52, 26, 3, 70, 73, 7),
}
SHOW_SLICE = 5
ZOOM = 5


def main(output: Path = OUTPUT) -> None:
    import slicer
    from conftest import makeScene
    from LiteMedSAMLogic import LiteMedSAMLogic, createRoiFromVoxelBox

    makeScene()
    template = importlib.util.find_spec("nilearn").submodule_search_locations[0]
    image = sitk.ReadImage(f"{template}/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
                           sitk.sitkFloat32)
    image = sitk.RegionOfInterest(image, CROP_SIZE, CROP_START)
    path = Path(tempfile.mkdtemp()) / "mni_t1.nrrd"
    sitk.WriteImage(image, str(path))
    volume = slicer.modules.volumes.logic().AddArchetypeVolume(str(path), "MNI152 T1")
    rois = [createRoiFromVoxelBox(volume, box, name) for name, box in BOXES.items()]
    segmentationNode = LiteMedSAMLogic().process(volume, rois, preset="mr")

    voxels = slicer.util.arrayFromVolume(volume)[SHOW_SLICE].astype(float)
    low, high = 0.0, float(np.percentile(voxels, 99.9)) * 1.15  # a soft window, like Slicer's auto W/L
    grey = np.clip((voxels - low) / (high - low) * 255, 0, 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(float)
    segmentation = segmentationNode.GetSegmentation()
    outlines = []
    for name in BOXES:
        segmentId = segmentation.GetSegmentIdBySegmentName(name)
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, volume)[SHOW_SLICE] > 0
        colour = np.array(segmentation.GetSegment(segmentId).GetColor()) * 255
        rgb[mask] = 0.5 * rgb[mask] + 0.5 * colour
        edge = mask & ~(np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1))
        outlines.append((edge, colour))
    for edge, colour in outlines:
        rgb[edge] = colour
    # LPS file with direction diag(-1, -1, 1): i runs to the patient's right, j to anterior.
    # Slicer's axial view: patient left on the right of the screen, anterior up -> flip both.
    picture = Image.fromarray(rgb[::-1, ::-1].astype(np.uint8)).resize(
        (grey.shape[1] * ZOOM, grey.shape[0] * ZOOM), Image.NEAREST)
    draw = ImageDraw.Draw(picture)
    height, width = grey.shape
    font = ImageFont.load_default(size=22)
    for n, ((name, (i0, j0, _, i1, j1, _)), (_, colour)) in enumerate(zip(BOXES.items(), outlines)):
        x0, x1 = (width - 1 - i1) * ZOOM, (width - i0) * ZOOM
        y0, y1 = (height - 1 - j1) * ZOOM, (height - j0) * ZOOM
        draw.rectangle((x0, y0, x1, y1), outline=(255, 220, 0), width=3)
        draw.text((x0, y1 + 6) if n == 0 else (x0, y0 - 30), name, fill=tuple(int(c) for c in colour),
                  font=font, stroke_width=2, stroke_fill=(0, 0, 0))
    canvas = Image.new("RGB", (picture.width, picture.height + 44), (0, 0, 0))
    canvas.paste(picture, (0, 44))
    header = ImageDraw.Draw(canvas)
    header.rectangle((0, 0, canvas.width, 40), fill=(168, 42, 42))  # Slicer's red view bar
    header.text((12, 8), "Axial  |  LiteMedSAM: Segment volume, 2 boxes",
                fill=(255, 255, 255), font=font)
    header.text((8, canvas.height // 2), "R", fill=(255, 255, 0), font=font)
    header.text((canvas.width - 24, canvas.height // 2), "L", fill=(255, 255, 0), font=font)
    header.text((canvas.width // 2, 50), "A", fill=(255, 255, 0), font=font)
    output.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(output)
    print(f"wrote {output}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUTPUT)
