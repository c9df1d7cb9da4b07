"""Render the README/Extensions Index screenshots of the Slicer module: real results, headless.

Runs ``LiteMedSAMLogic`` on MRML nodes (slicer-core, no Slicer application) and draws the axial
slice the way Slicer's red slice view shows it (radiological: patient right on the left,
anterior up), with the segments, the ROI boxes and correction points. Two pictures:

- ``Resources/Screenshots/LiteMedSAM-slice-view.png``: two ROI boxes (the lateral ventricles of the
  MNI152 T1 template from nilearn) after "Segment volume";
- ``Resources/Screenshots/LiteMedSAM-correct.png``: the shipped example's right temporal lobe after
  "Segment volume" and after object points placed where the segment misses the lobe (the
  reference outline in white), side by side.

Run from the repository root:

    python tools/render_module_screenshot.py [boxes|correct|all]
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

SCREENSHOTS = ROOT / "Resources" / "Screenshots"
CROP_START, CROP_SIZE = (50, 70, 90), (100, 100, 10)  # template x, y, z (as the tests)
# voxel boxes in the crop (i0, j0, k0, i1, j1, k1): the two lateral ventricles
BOXES = {
    "Left ventricle": (26, 26, 3, 44, 73, 7),
    "Right ventricle": (52, 26, 3, 70, 73, 7),
}
SHOW_SLICE = 5
ZOOM = 5
FONT = ImageFont.load_default(size=22)


def slice_view(volume, segmentationNode, names, k: int, zoom: int, boxes=(), points=(), outline=None,
               title: str = "") -> Image.Image:
    """One axial slice as Slicer's red view draws it: segments (filled, outlined), ROI boxes
    ``(name, (i0, j0, k0, i1, j1, k1))``, points ``(i, j, rgb)`` and an optional white outline."""
    import slicer

    voxels = slicer.util.arrayFromVolume(volume)[k].astype(float)
    low, high = 0.0, float(np.percentile(voxels, 99.9)) * 1.15  # a soft window, like Slicer's auto W/L
    grey = np.clip((voxels - low) / (high - low) * 255, 0, 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(float)
    segmentation = segmentationNode.GetSegmentation()
    edges = []
    for name in names:
        segmentId = segmentation.GetSegmentIdBySegmentName(name)
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, volume)[k] > 0
        colour = np.array(segmentation.GetSegment(segmentId).GetColor()) * 255
        rgb[mask] = 0.5 * rgb[mask] + 0.5 * colour
        edges.append((_edge(mask), colour))
    if outline is not None:
        edges.append((_edge(outline), np.array([255.0, 255.0, 255.0])))
    for edge, colour in edges:
        rgb[edge] = colour
    # LPS file with direction diag(-1, -1, 1): i runs to the patient's right, j to anterior.
    # Slicer's axial view: patient left on the right of the screen, anterior up -> flip both.
    height, width = grey.shape
    picture = Image.fromarray(rgb[::-1, ::-1].astype(np.uint8)).resize((width * zoom, height * zoom), Image.NEAREST)
    draw = ImageDraw.Draw(picture)
    for n, (name, (i0, j0, _, i1, j1, _)) in enumerate(boxes):
        x0, x1 = (width - 1 - i1) * zoom, (width - i0) * zoom
        y0, y1 = (height - 1 - j1) * zoom, (height - j0) * zoom
        draw.rectangle((x0, y0, x1, y1), outline=(255, 220, 0), width=3)
        colour = tuple(int(c) for c in edges[n][1])
        draw.text((x0, y1 + 6) if n == 0 else (x0, y0 - 30), name, fill=colour, font=FONT,
                  stroke_width=2, stroke_fill=(0, 0, 0))
    for i, j, colour in points:
        x, y = (width - 1 - i + 0.5) * zoom, (height - 1 - j + 0.5) * zoom
        draw.ellipse((x - 7, y - 7, x + 7, y + 7), fill=colour, outline=(0, 0, 0), width=2)
    canvas = Image.new("RGB", (picture.width, picture.height + 44), (0, 0, 0))
    canvas.paste(picture, (0, 44))
    header = ImageDraw.Draw(canvas)
    header.rectangle((0, 0, canvas.width, 40), fill=(168, 42, 42))  # Slicer's red view bar
    header.text((12, 8), title, fill=(255, 255, 255), font=FONT)
    return canvas


def with_orientation_letters(canvas: Image.Image, top: int = 44) -> Image.Image:
    """Slicer's orientation letters inside the edges of the view below the header bar, from the
    file's direction diag(-1, -1, 1) shown flipped in both axes (see :func:`slice_view`)."""
    from LiteMedSAMLib.overlay import orientation_letters

    letters = orientation_letters((-1, 0, 0, 0, -1, 0, 0, 0, 1), flip_rows=True, flip_cols=True)
    draw = ImageDraw.Draw(canvas)
    middle = (top + canvas.height) // 2
    for edge, (x, y, anchor) in {"left": (8, middle, "lm"), "right": (canvas.width - 8, middle, "rm"),
                                 "top": (canvas.width // 2, top + 6, "mt"),
                                 "bottom": (canvas.width // 2, canvas.height - 6, "mb")}.items():
        draw.text((x, y), letters[edge], fill=(255, 255, 0), font=FONT, anchor=anchor,
                  stroke_width=2, stroke_fill=(0, 0, 0))
    return canvas


def _edge(mask: np.ndarray) -> np.ndarray:
    return mask & ~(np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1))


def _load(image: sitk.Image, name: str):
    import slicer

    path = Path(tempfile.mkdtemp()) / f"{name}.nrrd"
    sitk.WriteImage(image, str(path))
    return slicer.modules.volumes.logic().AddArchetypeVolume(str(path), name)


def render_boxes(output: Path) -> None:
    from conftest import makeScene

    from LiteMedSAMLogic import LiteMedSAMLogic, createRoiFromVoxelBox

    makeScene()
    template = importlib.util.find_spec("nilearn").submodule_search_locations[0]
    image = sitk.ReadImage(f"{template}/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
                           sitk.sitkFloat32)
    volume = _load(sitk.RegionOfInterest(image, CROP_SIZE, CROP_START), "MNI152 T1")
    rois = [createRoiFromVoxelBox(volume, box, name) for name, box in BOXES.items()]
    segmentationNode = LiteMedSAMLogic().process(volume, rois, preset="mr")
    picture = slice_view(volume, segmentationNode, list(BOXES), SHOW_SLICE, ZOOM, boxes=list(BOXES.items()),
                         title="Axial  |  LiteMedSAM: Segment volume, 2 boxes")
    picture = with_orientation_letters(picture)
    output.parent.mkdir(parents=True, exist_ok=True)
    picture.save(output)
    print(f"wrote {output}")


def render_correction(output: Path) -> None:
    import vtk
    from conftest import makeScene

    from LiteMedSAMLib.evaluation.clicks import next_click
    from LiteMedSAMLib.example import EXAMPLE_IMAGE, EXAMPLE_LABEL
    from LiteMedSAMLogic import LiteMedSAMLogic, createRoiFromVoxelBox

    makeScene()
    volume = _load(sitk.ReadImage(str(EXAMPLE_IMAGE)), "example")
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(EXAMPLE_LABEL))) == 2
    ks, js, is_ = np.nonzero(truth)
    box = (int(is_.min()), int(js.min()), int(ks.min()), int(is_.max()), int(js.max()), int(ks.max()))
    name = "Right temporal lobe"
    logic = LiteMedSAMLogic()
    segmentationNode = logic.process(volume, createRoiFromVoxelBox(volume, box, name), preset="mr")
    segmentId = segmentationNode.GetSegmentation().GetSegmentIdBySegmentName(name)
    refinement = logic._refinement(segmentationNode, segmentId)
    k = 15
    ijkToRas = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(ijkToRas)
    zoom = 4
    crop = slice(55, 145), slice(72, 158)  # rows (j), columns (i) around the lobe
    before = with_orientation_letters(_cropped(
        slice_view(volume, segmentationNode, [name], k, zoom, outline=truth[k], title="After the box"),
        crop, zoom, truth.shape[1:]))
    objectPoints, backgroundPoints, scribbles = logic.createPromptNodes()
    placed = []
    for _ in range(3):  # where the segment misses most of the lobe on this slice, while it helps
        click = next_click(refinement.session.slice_mask(k)[None], truth[k][None])
        points = objectPoints if click.positive else backgroundPoints
        points.AddControlPointWorld(*ijkToRas.MultiplyPoint((click.x, click.y, k, 1))[:3])
        if not logic.refine(segmentationNode, segmentId, objectPoints, backgroundPoints, scribbles):
            points.RemoveNthControlPoint(points.GetNumberOfControlPoints() - 1)
            break
        placed.append((click.x, click.y, (60, 200, 60) if click.positive else (230, 60, 60)))
    after = with_orientation_letters(_cropped(
        slice_view(volume, segmentationNode, [name], k, zoom, points=placed, outline=truth[k],
                   title=f"After {len(placed)} object point{'s' * (len(placed) != 1)}"),
        crop, zoom, truth.shape[1:]))
    canvas = Image.new("RGB", (before.width + after.width + 12, before.height), (40, 40, 40))
    canvas.paste(before, (0, 0))
    canvas.paste(after, (before.width + 12, 0))
    output.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(output)
    print(f"wrote {output}")


def _cropped(picture: Image.Image, crop, zoom: int, shape) -> Image.Image:
    """Cut the view (header kept) to rows/columns ``crop`` of the slice (in voxel indices)."""
    height, width = shape
    rows, cols = crop
    top, bottom = (height - rows.stop) * zoom + 44, (height - rows.start) * zoom + 44
    left, right = (width - cols.stop) * zoom, (width - cols.start) * zoom
    view = picture.crop((left, top, right, bottom))
    header = picture.crop((0, 0, right - left, 44))
    out = Image.new("RGB", (view.width, view.height + 44))
    out.paste(header, (0, 0))
    out.paste(view, (0, 44))
    return out


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    if which in ("boxes", "all"):
        render_boxes(SCREENSHOTS / "LiteMedSAM-slice-view.png")
    if which in ("correct", "all"):
        render_correction(SCREENSHOTS / "LiteMedSAM-correct.png")
