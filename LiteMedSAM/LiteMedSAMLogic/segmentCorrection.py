"""Correcting a LiteMedSAM segment with points and scribbles placed in Slicer.

Each segment that a run wrote keeps a :class:`SegmentRefinement`: the library's
``RefinementSession`` (which reuses the cached slice embeddings, so a correction costs
decoder runs only) and what of the scene it has already applied. The user's prompts live in
ordinary MRML nodes, so that they are visible, movable, deletable and saved with the scene:

- points: two markups point lists, one for object (positive) and one for background
  (negative) points;
- scribbles: a segmentation with an "object scribble" and a "background scribble" segment,
  painted with the Segment Editor's Paint and Erase effects.

:meth:`SegmentRefinement.sync` reads those nodes and brings the session in line with them:
each slice whose prompts differ from what it has applied is corrected (new prompts are
appended in the order they appear, removed or moved ones are replayed away), and the
changed slices are returned. Reading the nodes is plain MRML; no Qt.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import slicer
import vtk
from scipy import ndimage

from LiteMedSAMLib.errors import LiteMedSAMError
from LiteMedSAMLib.refinement import Prompt, RefinementSession

from . import geometry

OBJECT_SCRIBBLE = "object scribble"
BACKGROUND_SCRIBBLE = "background scribble"


@dataclass
class _Interaction:
    """One :meth:`SegmentRefinement.sync` that changed something, for undo."""

    before: dict[int, list[tuple]]  # the applied prompt keys before it
    sessionSteps: int               # how many session interactions it made (one per slice)


@dataclass
class SegmentRefinement:
    """One segment's correction state; see the module docstring."""

    session: RefinementSession
    volumeNodeId: str
    worldToIjk: np.ndarray
    axis: int  # IJK axis the model slices along
    applied: dict[int, list[tuple]] = field(default_factory=dict)  # slice -> prompt keys in order
    prompts: dict[tuple, Prompt] = field(default_factory=dict)      # key -> the Prompt given
    steps: list[_Interaction] = field(default_factory=list)
    _paintedCache: dict = field(default_factory=dict)  # scribble segment ID -> (key, voxels)

    @property
    def permutation(self) -> tuple[int, int, int]:
        return geometry.slicingPermutation(self.axis)

    # ------------------------------------------------------------------ scene -> prompts
    def _toSession(self, ras: np.ndarray) -> np.ndarray:
        """World RAS ``(N, 3)`` -> session ``(z, y, x)`` voxel coordinates (float)."""
        ijk = geometry.rasToIjkPoints(np.asarray(ras, float).reshape(-1, 3), self.worldToIjk)
        kji = ijk[:, ::-1]  # array order [k, j, i]
        return kji[:, list(self.permutation)]

    def pointPrompts(self, pointNode, positive: bool) -> dict[int, list[tuple]]:
        """``{slice: [key, ...]}`` for the control points of ``pointNode`` (keys hold the Prompt)."""
        found: dict[int, list[tuple]] = {}
        if pointNode is None:
            return found
        nz, h, w = self.session.predictor.shape
        for index in range(pointNode.GetNumberOfControlPoints()):
            if pointNode.GetNthControlPointPositionStatus(index) != pointNode.PositionDefined:
                continue  # being placed
            ras = np.zeros(3)
            pointNode.GetNthControlPointPositionWorld(index, ras)
            z, y, x = self._toSession(ras)[0]
            zi = round(z)
            label = pointNode.GetNthControlPointLabel(index) or f"#{index + 1}"
            if not (0 <= zi < nz and -0.5 <= y < h - 0.5 and -0.5 <= x < w - 0.5):
                raise LiteMedSAMError(f"Point '{label}' of '{pointNode.GetName()}' lies outside the volume.")
            box = self.session.box
            if zi not in box.z_range:
                raise LiteMedSAMError(
                    f"Point '{label}' of '{pointNode.GetName()}' is on slice {zi}, outside the box's slices "
                    f"{box.z0}..{box.z1}; enlarge the ROI and segment again to reach that slice.")
            xi, yi = int(np.clip(round(x), 0, w - 1)), int(np.clip(round(y), 0, h - 1))
            key = ("point", pointNode.GetID(), pointNode.GetNthControlPointID(index), zi, xi, yi, positive)
            self.prompts.setdefault(key, Prompt(np.array([[xi, yi]]), positive))
            found.setdefault(zi, []).append(key)
        return found

    def scribblePrompts(self, scribbleNode) -> dict[int, list[tuple]]:
        """``{slice: [key, ...]}``: each 8-connected painted patch of a slice is one scribble."""
        found: dict[int, list[tuple]] = {}
        if scribbleNode is None:
            return found
        volume = slicer.mrmlScene.GetNodeByID(self.volumeNodeId)
        segmentation = scribbleNode.GetSegmentation()
        for name, positive in ((OBJECT_SCRIBBLE, True), (BACKGROUND_SCRIBBLE, False)):
            segmentId = segmentation.GetSegmentIdBySegmentName(name)
            if not segmentId:
                continue
            box = self.session.box
            for z, painted in self._painted(scribbleNode, segmentId, volume).items():
                if z not in box.z_range:
                    raise LiteMedSAMError(
                        f"The {name} on slice {z} is outside the box's slices {box.z0}..{box.z1}; "
                        "erase it, or enlarge the ROI and segment again.")
                labels, count = ndimage.label(painted, structure=np.ones((3, 3), bool))
                for component in range(1, count + 1):
                    ys, xs = np.nonzero(labels == component)
                    pixels = np.stack([xs, ys], axis=1)
                    key = ("scribble", segmentId, int(z), positive, pixels.tobytes())
                    self.prompts.setdefault(key, Prompt(pixels, positive))
                    found.setdefault(int(z), []).append(key)
        return found

    def _painted(self, scribbleNode, segmentId: str, volume) -> dict[int, np.ndarray]:
        """``{slice: painted pixels [y, x] (bool)}`` of a scribble segment, painted slices only.

        Reading a segment as a volume-sized array costs ~0.3 s on a 512 x 512 x 300 CT, and
        every correction looks at the scribbles: an empty segment is recognised from its
        labelmap's extent, one on the volume's voxel grid (what the Segment Editor paints) is
        read from that extent only, and an unchanged one (same modification time) not again.
        """
        segment = scribbleNode.GetSegmentation().GetSegment(segmentId)
        name = slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()
        labelmap = segment.GetRepresentation(name) if segment is not None else None
        if labelmap is None:
            return {}
        extent = labelmap.GetExtent()
        if extent[0] > extent[1] or extent[2] > extent[3] or extent[4] > extent[5]:
            return {}
        key = (scribbleNode.GetID(), segmentId, labelmap.GetMTime(), segment.GetLabelValue())
        cached = self._paintedCache.get(segmentId)
        if cached is None or cached[0] != key:
            region = self._regionOnVolumeGrid(scribbleNode, labelmap, segment.GetLabelValue(), volume)
            if region is None:  # another grid: let Slicer resample it onto the volume's
                whole = slicer.util.arrayFromSegmentBinaryLabelmap(scribbleNode, segmentId, volume)
                region = (np.zeros(3, int), np.zeros((0, 0, 0), bool) if whole is None else np.asarray(whole) > 0)
            self._paintedCache[segmentId] = cached = (key, self._slicesOf(*region))
        return cached[1]

    def _regionOnVolumeGrid(self, scribbleNode, labelmap, labelValue: int, volume):
        """``(offset [k, j, i], painted voxels)`` of a labelmap on the volume's voxel grid
        (cropped to the volume), or None when it lies on another grid or under a transform."""
        if scribbleNode.GetParentTransformNode() is not None or volume.GetParentTransformNode() is not None:
            return None
        from vtk.util import numpy_support

        matrix = vtk.vtkMatrix4x4()
        labelmap.GetImageToWorldMatrix(matrix)
        if not np.allclose(slicer.util.arrayFromVTKMatrix(matrix), np.linalg.inv(self.worldToIjk), atol=1e-6):
            return None
        i0, i1, j0, j1, k0, k1 = labelmap.GetExtent()
        voxels = numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars())
        voxels = voxels.reshape(k1 - k0 + 1, j1 - j0 + 1, i1 - i0 + 1) == labelValue
        size = np.empty(3, int)
        size[list(self.permutation)] = self.session.predictor.shape  # the volume's [k, j, i] size
        start = np.array([k0, j0, i0])
        lo, hi = np.maximum(start, 0), np.minimum(start + voxels.shape, size)
        if np.any(hi <= lo):
            return lo, np.zeros((0, 0, 0), bool)
        return lo, voxels[tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start))]

    def _slicesOf(self, offset: np.ndarray, region: np.ndarray) -> dict[int, np.ndarray]:
        """Painted slices (session order) of a ``[k, j, i]`` region at ``offset``."""
        region = geometry.permuteArray(region, self.permutation)
        offset = np.asarray(offset)[list(self.permutation)]
        _, h, w = self.session.predictor.shape
        slices = {}
        for index in np.nonzero(region.reshape(len(region), -1).any(1))[0]:
            full = np.zeros((h, w), dtype=bool)
            full[offset[1]:offset[1] + region.shape[1], offset[2]:offset[2] + region.shape[2]] = region[index]
            slices[int(offset[0] + index)] = full
        return slices

    # ------------------------------------------------------------------ sync & undo
    def sync(self, positiveNode=None, negativeNode=None, scribbleNode=None) -> list[int]:
        """Correct the slices whose points or scribbles changed; returns the changed slices.

        All of it is one interaction for :meth:`undo`.
        """
        wanted: dict[int, list[tuple]] = {}
        for found in (self.pointPrompts(positiveNode, True), self.pointPrompts(negativeNode, False),
                      self.scribblePrompts(scribbleNode)):
            for z, keys in found.items():
                wanted.setdefault(z, []).extend(keys)
        before = {z: list(keys) for z, keys in self.applied.items()}
        changed: set[int] = set()
        sessionSteps = 0
        for z in sorted(set(wanted) | set(self.applied)):
            applied = self.applied.get(z, [])
            keys = [k for k in applied if k in wanted.get(z, [])]
            keys += [k for k in wanted.get(z, []) if k not in keys]
            if keys == applied:
                continue
            changed.update(self.session.set_prompts(z, [self.prompts[k] for k in keys]))
            sessionSteps += 1
            if keys:
                self.applied[z] = keys
            else:
                self.applied.pop(z, None)
        if sessionSteps:
            self.steps.append(_Interaction(before, sessionSteps))
        return sorted(changed)

    def apply(self, method, sliceIndex: int) -> list[int]:
        """Run a session interaction on one slice (``session.clear_slice``, ``lock``, ``unlock``)
        as one undoable step."""
        if method == self.session.clear_slice and self.applied.get(int(sliceIndex)):
            raise LiteMedSAMError(f"Slice {sliceIndex} has points or scribbles; delete them before "
                                  "clearing the slice.")
        changed = method(int(sliceIndex))
        self.steps.append(_Interaction({z: list(keys) for z, keys in self.applied.items()}, 1))
        return changed

    @property
    def canUndo(self) -> bool:
        return bool(self.steps)

    def undo(self) -> list[int]:
        """Undo the last :meth:`sync` that changed something: the session goes back, and the
        point lists too (points it added are deleted, moved ones go back, deleted ones are
        placed again), so that the scene and the segment agree. Returns the changed slices."""
        if not self.steps:
            raise LiteMedSAMError("Nothing to undo in this segment's corrections.")
        step = self.steps.pop()
        changed: set[int] = set()
        for _ in range(step.sessionSteps):
            changed.update(self.session.undo())
        now = {k for keys in self.applied.values() for k in keys if k[0] == "point"}
        old = {k for keys in step.before.values() for k in keys if k[0] == "point"}
        oldById = {k[1:3]: k for k in old}
        nowIds = {k[1:3] for k in now}
        for key in now - old:
            node = slicer.mrmlScene.GetNodeByID(key[1])
            index = node.GetNthControlPointIndexByID(key[2]) if node is not None else -1
            if index < 0:
                continue
            if key[1:3] in oldById:  # moved: put it back
                node.SetNthControlPointPositionWorld(index, *self._toRas(oldById[key[1:3]]))
            else:                     # added: take it away
                node.RemoveNthControlPoint(index)
        renamed = {}
        for key in old - now:
            node = slicer.mrmlScene.GetNodeByID(key[1])
            if key[1:3] in nowIds or node is None:
                continue
            index = node.AddControlPointWorld(*self._toRas(key))  # deleted: place it again
            newKey = key[:2] + (node.GetNthControlPointID(index),) + key[3:]
            self.prompts[newKey] = self.prompts[key]
            renamed[key] = newKey
        self.applied = {z: [renamed.get(k, k) for k in keys] for z, keys in step.before.items()}
        return sorted(changed)

    def _toRas(self, key: tuple) -> tuple[float, float, float]:
        """World RAS of a point key's voxel centre (on its slice)."""
        _, _, _, z, x, y, _ = key
        kji = np.empty(3)
        kji[list(self.permutation)] = (z, y, x)
        ras = np.linalg.inv(self.worldToIjk) @ np.r_[kji[::-1], 1.0]
        return tuple(float(v) for v in ras[:3])
