"""LiteMedSAMLogic: box-prompted segmentation of Slicer volumes, usable without the GUI.

A run has three steps, so that the widget can do the middle one in a background thread:

1. :meth:`LiteMedSAMLogic.prepareJob` (main thread): validates the inputs, copies the voxels,
   maps each ROI from RAS to a voxel box and chooses the slicing axis. Reads MRML only.
2. :meth:`LiteMedSAMLogic.runJob` (any thread): runs the model with ``LiteMedSAMLib``; numpy and
   torch only, no MRML. Slice embeddings are cached per volume, so all boxes of a run and later
   runs on the same volume encode each slice once.
3. :meth:`LiteMedSAMLogic.applyResult` (main thread): writes one segment per ROI into the
   segmentation node, with the source volume's geometry, as one undoable step.

:meth:`LiteMedSAMLogic.process` does all three, for the Python console and batch scripts.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import slicer
import vtk

from LiteMedSAMLib.colors import SEGMENT_COLORS as PALETTE
from LiteMedSAMLib.errors import LiteMedSAMError
from LiteMedSAMLib.pipeline import DEFAULT_PIPELINE, PIPELINES, get_pipeline
from LiteMedSAMLib.presets import PRESETS

from . import dependencies, geometry

try:  # inside Slicer; headless (slicer-core) has no ScriptedLoadableModule
    from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic as _LogicBase
except ImportError:
    _LogicBase = object

# The intensity presets and pipelines (LiteMedSAMLib.presets and .pipeline import nothing heavy).
PRESET_NAMES = PRESETS
PIPELINE_NAMES = tuple(PIPELINES)

# How "Segment volume" sets a box's extent along the slicing axis. "automatic": from the slice
# the box was drawn on (the ROI's centre), swept up and down until the object ends: Slicer gives
# an ROI placed with two clicks in a slice view a depth equal to its shortest in-plane side, so
# that depth says nothing about the object. "roi": the ROI's own extent (once the user has set it
# in a second view), swept from its middle slice as the official pipeline does.
SLICE_EXTENTS = ("automatic", "roi")

# The library's segment palette (LiteMedSAMLib.colors), so Slicer and the command line colour
# the same result alike; used in order, skipping colours already in the segmentation.
SEGMENT_COLORS = PALETTE

# Segment tag that links a segment to the ROI node it was made from (re-runs replace it).
ROI_TAG = "LiteMedSAM.RoiNodeID"

ProgressCallback = Callable[[int, int], None]


@dataclass
class BoxTask:
    """One ROI of a job: the segment it writes and the voxels it covers.

    ``boxIjk`` is the inclusive voxel box ``(i0, j0, k0, i1, j1, k1)``, clipped to the volume;
    in slice mode its range along the slicing axis is the one slice ``sliceIndex``.
    """

    segmentName: str
    roiNodeId: str
    boxIjk: tuple[int, int, int, int, int, int]
    sliceIndex: int | None = None
    startSlice: int | None = None  # "automatic" extent: the slice (along the axis) the box was drawn on


@dataclass
class SegmentationJob:
    """Everything :meth:`LiteMedSAMLogic.runJob` needs, detached from MRML."""

    volumeNodeId: str
    volumeName: str
    volumeArray: np.ndarray  # a copy of the voxels, [k, j, i] (or [k, j, i, 3] for RGB)
    volumeKey: tuple  # identifies the voxels for the embedding cache
    axis: int  # IJK axis the model slices along (2 = K)
    sliceMode: bool
    tasks: list[BoxTask]
    modelName: str
    preset: str
    warnings: list[str] = field(default_factory=list)
    pipeline: str = DEFAULT_PIPELINE
    worldToIjk: np.ndarray | None = None  # world RAS -> IJK of the volume (points of corrections)
    refinements: list = field(default_factory=list)  # one SegmentRefinement per task, after runJob

    @property
    def permutation(self) -> tuple[int, int, int]:
        return geometry.slicingPermutation(self.axis)

    @property
    def sliceSpacing(self) -> float | None:
        """Distance in mm between the slices the model sees (along ``axis``, in world space)."""
        if self.worldToIjk is None:
            return None
        return float(np.linalg.norm(np.linalg.inv(self.worldToIjk)[:3, self.axis]))


def _worldToParent(node) -> np.ndarray:
    """Matrix from world RAS to the node's own RAS (identity without a parent transform)."""
    parent = node.GetParentTransformNode()
    if parent is None:
        return np.eye(4)
    if not parent.IsTransformToWorldLinear():
        raise LiteMedSAMError(
            f"'{node.GetName()}' is under the non-linear transform '{parent.GetName()}'; "
            "harden the transform first (Data module, right-click > Harden transform).")
    matrix = vtk.vtkMatrix4x4()
    parent.GetMatrixTransformFromWorld(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def volumeWorldToIjk(volumeNode) -> np.ndarray:
    """The volume's world-RAS-to-IJK matrix (including a linear parent transform)."""
    rasToIjk = vtk.vtkMatrix4x4()
    volumeNode.GetRASToIJKMatrix(rasToIjk)
    return slicer.util.arrayFromVTKMatrix(rasToIjk) @ _worldToParent(volumeNode)


def roiWorldCorners(roiNode) -> np.ndarray:
    """The 8 corners of an ROI node in world RAS, ``(8, 3)``."""
    parent = roiNode.GetParentTransformNode()
    if parent is not None and not parent.IsTransformToWorldLinear():
        _worldToParent(roiNode)  # raises the "harden the transform" message
    return geometry.roiCorners(slicer.util.arrayFromVTKMatrix(roiNode.GetObjectToWorldMatrix()), roiNode.GetSize())


def slicePlane(sliceNode) -> tuple[np.ndarray, np.ndarray]:
    """``(normal, point)`` in world RAS of the slice a slice view shows."""
    sliceToRas = slicer.util.arrayFromVTKMatrix(sliceNode.GetSliceToRAS())
    return sliceToRas[:3, 2], sliceToRas[:3, 3]


class LiteMedSAMLogic(_LogicBase):
    """Segment the inside of ROI boxes with LiteMedSAM; no GUI needed.

    Keeps the loaded models and the slice embeddings of the last volumes between runs.
    """

    maximumCachedVolumes = 2  # each keeps up to 128 slice embeddings (4 MiB each)
    maximumRefinableSegments = 16  # each correctable segment keeps a mask of its volume's size

    def __init__(self, mode: str | None = None) -> None:
        """``mode``: the inference mode (``LiteMedSAMLib.backends.MODES``); ``None`` (default):
        ``fast`` where the CPU runs bfloat16, else ``exact``, chosen when the first predictor
        is made (``interactive_mode``: on the labelled suite ``fast`` scored as ``exact``
        against the labels)."""
        if _LogicBase is not object:
            _LogicBase.__init__(self)
        self.mode = mode
        self._models: dict[str, object] = {}
        self._predictors: OrderedDict[tuple, object] = OrderedDict()
        self._histories: dict[str, tuple[object, object]] = {}
        self._refinements: dict[tuple[str, str], object] = {}  # (segmentation ID, segment ID) -> state

    # ------------------------------------------------------------------ models & dependencies
    @staticmethod
    def availableModels(usableOnly: bool = True) -> dict[str, str]:
        """Registered model names and titles (from the model manifests; no torch needed).

        With ``usableOnly`` (the default, what the GUI lists), models whose weights are neither
        installed nor installable with pip (students that Training/ has not exported yet) are
        left out.
        """
        from LiteMedSAMLib import registry

        rows = registry.describe_models()
        return {row["name"]: row["title"] for row in rows
                if not usableOnly or row["weights"] or (row["install"] or "").startswith("pip install")}

    @staticmethod
    def defaultModelName() -> str:
        from LiteMedSAMLib import registry

        return registry.default_model_name()

    @staticmethod
    def missingDependencies(modelName: str | None = None) -> list[dependencies.Requirement]:
        """Python packages (and weights) that must be installed before ``modelName`` can run."""
        return dependencies.missingRequirements(modelName or None)

    def installDependencies(self, modelName: str | None = None) -> None:
        """Install what :meth:`missingDependencies` lists, inside Slicer (asks nothing: the
        caller confirms with the user first). Raises ``ValueError`` when it cannot (offline)."""
        missing = self.missingDependencies(modelName)
        if missing:
            pipInstall, installTorch = dependencies.slicerInstallers()
            dependencies.installRequirements(missing, pipInstall, installTorch)

    def _loadModel(self, modelName: str):
        if modelName not in self._models:
            from LiteMedSAMLib.registry import load_model

            self._models[modelName] = load_model(modelName)
        return self._models[modelName]

    # ------------------------------------------------------------------ batch entry point
    def process(self, inputVolume, roiNodes, outputSegmentation=None, *, sliceNode=None,
                modelName: str | None = None, preset: str = "auto",
                pipeline: str = DEFAULT_PIPELINE, sliceExtent: str = "automatic",
                progressCallback: ProgressCallback | None = None,
                shouldCancel: Callable[[], bool] | None = None, showResult: bool = True):
        """Segment the inside of each ROI into its own segment of ``outputSegmentation``.

        Args:
            inputVolume: the image (scalar volume, or an RGB vector volume). Never modified.
            roiNodes: one ``vtkMRMLMarkupsROINode`` or a list of them; each gives one segment,
                named after the ROI. A segment made earlier from the same ROI is replaced.
            outputSegmentation: segmentation node to write to; created if None.
            sliceNode: if given (e.g. ``slicer.app.layoutManager().sliceWidget("Red")
                .mrmlSliceNode()``), segment only the slice that view shows, inside each box;
                otherwise segment each box's whole slice range (mid-slice propagation along
                the volume's K axis).
            modelName: a registered model (:meth:`availableModels`); default model if None.
            preset: intensity preset, one of :data:`PRESET_NAMES`.
            pipeline: ``"default"`` (the measured best: each object's intensity window is
                chosen on its start slice, on thin slices each slice's result is the next
                one's mask prompt, and the masks stay inside the box drawn: a 3D box's every
                slice, a 2D box's own slice) or ``"official"`` (the official
                LiteMedSAM pipeline, mask for mask); see ``LiteMedSAMLib.pipeline``.
            sliceExtent: how a box's extent along the slicing axis is set (:data:`SLICE_EXTENTS`):
                ``"automatic"`` (default) segments from the slice the box was drawn on (the ROI's
                centre) up and down until the object ends; ``"roi"`` uses the ROI's own extent.
            progressCallback: called as ``progressCallback(slicesDone, slicesTotal)``.
            shouldCancel: called before each slice; returning True stops the run with
                ``LiteMedSAMLib.errors.SegmentationCancelled`` and changes nothing.
            showResult: show the segments in slice and 3D views.

        Returns:
            The segmentation node.

        Raises:
            ValueError: missing or bad inputs, an ROI outside the volume, missing packages.
        """
        job = self.prepareJob(inputVolume, roiNodes, sliceNode=sliceNode, modelName=modelName,
                              preset=preset, pipeline=pipeline, sliceExtent=sliceExtent)
        masks = self.runJob(job, progressCallback, shouldCancel)
        return self.applyResult(job, masks, outputSegmentation, showResult=showResult)

    # ------------------------------------------------------------------ step 1: prepare
    def prepareJob(self, inputVolume, roiNodes, *, sliceNode=None, modelName: str | None = None,
                   preset: str = "auto", pipeline: str = DEFAULT_PIPELINE,
                   sliceExtent: str = "automatic") -> SegmentationJob:
        """Check the inputs and turn the ROIs into voxel boxes (main thread; reads MRML)."""
        volumeArray = self._checkVolume(inputVolume)
        rois = self._checkRois(roiNodes)
        if preset not in PRESET_NAMES:
            raise LiteMedSAMError(f"Unknown intensity preset {preset!r}; choose one of "
                                  f"{', '.join(PRESET_NAMES)}.")
        pipeline = get_pipeline(pipeline).name  # a clear error for an unknown name
        if sliceExtent not in SLICE_EXTENTS:
            raise LiteMedSAMError(f"Unknown slice extent {sliceExtent!r}; choose one of "
                                  f"{', '.join(SLICE_EXTENTS)}.")
        modelName = modelName or self.defaultModelName()
        if modelName not in self.availableModels(usableOnly=False):
            raise LiteMedSAMError(f"Unknown model {modelName!r}; available models: "
                                  f"{', '.join(self.availableModels())}.")
        missing = self.missingDependencies(modelName)
        if missing:
            raise LiteMedSAMError(dependencies.describeMissing(missing) + "\nInstall them from the "
                                  "LiteMedSAM module (it offers to) or with "
                                  "LiteMedSAMLogic().installDependencies().")

        worldToIjk = volumeWorldToIjk(inputVolume)
        ijkToWorld = np.linalg.inv(worldToIjk)
        shape = volumeArray.shape[:3]
        if sliceNode is not None:
            normal, point = slicePlane(sliceNode)
            axis = geometry.nearestIjkAxis(normal, ijkToWorld)
        else:
            axis = 2
        tasks, warnings = [], []
        for roi in rois:
            name = f"ROI '{roi.GetName()}'"
            corners = geometry.rasToIjkPoints(roiWorldCorners(roi), worldToIjk)
            sliceIndex = None
            if sliceNode is not None:
                center = roi.GetObjectToWorldMatrix().MultiplyPoint((0.0, 0.0, 0.0, 1.0))[:3]
                sliceIndex = geometry.sliceIndexOnPlane(axis, normal, point, center, worldToIjk)
                low, high = corners[:, axis].min(), corners[:, axis].max()
                if not low - 0.499 <= sliceIndex <= high + 0.499:  # the box cuts that voxel slice
                    raise LiteMedSAMError(
                        f"The slice shown in view '{sliceNode.GetName()}' (voxel slice {sliceIndex} "
                        f"along {geometry.IJK_AXIS_NAMES[axis]}) does not cross {name} (slices "
                        f"{low:.1f} to {high:.1f}); move the view to a slice through the box.")
                corners[:, axis] = sliceIndex  # a box drawn flat in the view still counts
            box, notes = geometry.voxelBoxFromRoi(corners, shape, name)
            warnings.extend(notes)
            startSlice = None
            if sliceNode is None and sliceExtent == "automatic":
                startSlice = self._drawnSlice(roi, worldToIjk, axis, shape, name)
            tasks.append(BoxTask(roi.GetName(), roi.GetID(), box, sliceIndex, startSlice))
        for note in warnings:
            logging.warning(note)
        volumeKey = (inputVolume.GetID(), inputVolume.GetImageData().GetMTime())
        return SegmentationJob(inputVolume.GetID(), inputVolume.GetName(), volumeArray, volumeKey,
                               axis, sliceNode is not None, tasks, modelName, preset, warnings,
                               pipeline=pipeline, worldToIjk=worldToIjk)

    @staticmethod
    def _drawnSlice(roi, worldToIjk: np.ndarray, axis: int, shape, name: str) -> int:
        """The voxel slice along ``axis`` through the ROI's centre: where a box placed with two
        clicks in a slice view was drawn (Slicer pads its depth symmetrically about that plane)."""
        center = roi.GetObjectToWorldMatrix().MultiplyPoint((0.0, 0.0, 0.0, 1.0))[:3]
        index = geometry.rasToIjkPoints(np.array([center]), worldToIjk)[0, axis]
        size = shape[2 - axis]  # shape is [k, j, i]
        if not -0.5 <= index < size - 0.5:
            raise LiteMedSAMError(f"The centre of {name} lies outside the volume along "
                                  f"{geometry.IJK_AXIS_NAMES[axis]} (slice {index:.1f} of 0..{size - 1}); "
                                  "move the box onto the image.")
        return int(round(index))

    @staticmethod
    def _checkVolume(inputVolume) -> np.ndarray:
        if inputVolume is None:
            raise LiteMedSAMError("No input volume: select the image to segment.")
        if not inputVolume.IsA("vtkMRMLScalarVolumeNode"):
            raise LiteMedSAMError(f"'{inputVolume.GetName()}' is a {inputVolume.GetClassName()}, "
                                  "not an image volume.")
        if inputVolume.IsA("vtkMRMLLabelMapVolumeNode"):
            raise LiteMedSAMError(f"'{inputVolume.GetName()}' is a labelmap; select the image.")
        if inputVolume.GetImageData() is None:
            raise LiteMedSAMError(f"Volume '{inputVolume.GetName()}' has no voxels.")
        # A copy: the run works on it in another thread, and the source is never written to.
        return np.array(slicer.util.arrayFromVolume(inputVolume))

    @staticmethod
    def _checkRois(roiNodes) -> list:
        if roiNodes is None:
            roiNodes = []
        elif not isinstance(roiNodes, (list, tuple)):
            roiNodes = [roiNodes]
        if len(roiNodes) == 0:
            raise LiteMedSAMError("No ROI box given: place at least one box (markups ROI) on the "
                                  "structure to segment.")
        for roi in roiNodes:
            if roi is None or not roi.IsA("vtkMRMLMarkupsROINode"):
                what = "None" if roi is None else f"'{roi.GetName()}' ({roi.GetClassName()})"
                raise LiteMedSAMError(f"{what} is not an ROI box (vtkMRMLMarkupsROINode).")
            if roi.GetNumberOfControlPoints() == 0:
                raise LiteMedSAMError(f"ROI '{roi.GetName()}' has not been placed yet.")
        return list(roiNodes)

    # ------------------------------------------------------------------ step 2: run (no MRML)
    def runJob(self, job: SegmentationJob, progressCallback: ProgressCallback | None = None,
               shouldCancel: Callable[[], bool] | None = None) -> list[np.ndarray]:
        """Segment every box of ``job``; returns one uint8 ``[k, j, i]`` 0/1 mask per task.

        Touches no MRML node, so it may run in a worker thread (one run at a time per logic).

        Raises:
            LiteMedSAMLib.errors.SegmentationCancelled: ``shouldCancel()`` returned True.
        """
        from LiteMedSAMLib.boxes import SliceBox
        from LiteMedSAMLib.propagation import check_boxes, slice_counter
        from LiteMedSAMLib.refinement import RefinementSession

        from .segmentCorrection import SegmentRefinement

        predictor = self._predictorFor(job)
        boxes = []
        for task in job.tasks:
            x0, y0, z0, x1, y1, z1 = geometry.permuteBox(task.boxIjk, job.permutation)
            if task.startSlice is not None and not job.sliceMode:  # a 2D start: the object sets its extent
                boxes.append(SliceBox(task.startSlice, x0, y0, x1, y1))
            else:
                boxes.append((x0, y0, z0, x1, y1, z1))
        boxes = check_boxes(boxes, predictor.shape)  # all of them before any work
        onSlice = slice_counter(boxes, progressCallback)

        # Each box is a refinement session (its first run is the plain mid-slice propagation;
        # one slice in slice mode), kept so that points and scribbles can correct it later.
        job.refinements = []
        masks = []
        for box in boxes:
            session = RefinementSession(predictor, box, pipeline=job.pipeline)
            masks.append(session.run(shouldCancel, onSlice))
            job.refinements.append(SegmentRefinement(session, job.volumeNodeId, job.worldToIjk, job.axis))
        inverse = geometry.inversePermutation(job.permutation)
        return [np.ascontiguousarray(mask.transpose(inverse)) for mask in masks]

    def _predictorFor(self, job: SegmentationJob):
        """The cached predictor of this volume, model, preset and slicing axis, or a new one."""
        from LiteMedSAMLib.backends import interactive_mode, make_predictor

        if self.mode is None:
            self.mode = interactive_mode()
        spacing = job.sliceSpacing
        key = (job.volumeKey, job.modelName, job.preset, job.axis, spacing, self.mode)
        if key in self._predictors:
            self._predictors.move_to_end(key)
            return self._predictors[key]
        # OpenVINO when installed (exact: the same masks as PyTorch), else eager PyTorch
        predictor = make_predictor(self._loadModel(job.modelName), self.mode)
        predictor.set_volume(geometry.permuteArray(job.volumeArray, job.permutation), preset=job.preset,
                             slice_spacing=spacing)
        self._predictors[key] = predictor
        while len(self._predictors) > self.maximumCachedVolumes:
            _, dropped = self._predictors.popitem(last=False)
            # Corrections need their volume's embeddings: segments of a dropped volume are no
            # longer correctable (segmenting them again makes them so), and memory is freed.
            self._refinements = {key: r for key, r in self._refinements.items()
                                 if r.session.predictor.base is not dropped}
        return predictor

    def forgetScene(self) -> None:
        """Forget everything tied to the scene's nodes (slice embeddings, correction sessions,
        undo states): call it when the scene closes, since the next scene reuses node IDs.
        Loaded models are kept."""
        self._predictors.clear()
        self._refinements.clear()
        self._histories.clear()

    # ------------------------------------------------------------------ step 3: apply
    def applyResult(self, job: SegmentationJob, masks: Sequence[np.ndarray],
                    outputSegmentation=None, showResult: bool = True):
        """Write ``masks`` into ``outputSegmentation`` (created if None) as one undoable step.

        Each task's segment (found by its ROI tag, else by name) is replaced: in volume mode
        completely, in slice mode only on the segmented slice. New segments get a colour not
        yet used in the segmentation.
        """
        scene = slicer.mrmlScene
        volume = scene.GetNodeByID(job.volumeNodeId)
        if volume is None:
            raise LiteMedSAMError(f"Volume '{job.volumeName}' was removed from the scene during "
                                  "the run; nothing was written.")
        if len(masks) != len(job.tasks):
            raise LiteMedSAMError(f"{len(masks)} masks for {len(job.tasks)} boxes")
        if outputSegmentation is None:
            outputSegmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode",
                                                         f"{job.volumeName} LiteMedSAM")
        segmentation = outputSegmentation.GetSegmentation()
        if segmentation.GetNumberOfSegments() == 0 or outputSegmentation.GetNodeReference(
                outputSegmentation.GetReferenceImageGeometryReferenceRole()) is None:
            outputSegmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        self._history(outputSegmentation).SaveState()
        wasModifying = outputSegmentation.StartModify()
        try:
            for index, (task, mask) in enumerate(zip(job.tasks, masks)):
                segmentId = self._segmentIdFor(outputSegmentation, task)
                key = (outputSegmentation.GetID(), segmentId)
                self._refinements.pop(key, None)
                if index < len(job.refinements):  # corrections start from this run's result
                    self._refinements[key] = job.refinements[index]
                    while len(self._refinements) > self.maximumRefinableSegments:
                        self._refinements.pop(next(iter(self._refinements)))  # the oldest
                if task.sliceIndex is not None:
                    mask = self._replaceSlice(outputSegmentation, segmentId, volume, mask,
                                              job.axis, task.sliceIndex)
                slicer.util.updateSegmentBinaryLabelmapFromArray(mask, outputSegmentation,
                                                                 segmentId, volume)
        finally:
            outputSegmentation.EndModify(wasModifying)
        if showResult:
            outputSegmentation.CreateDefaultDisplayNodes()
            outputSegmentation.CreateClosedSurfaceRepresentation()
        return outputSegmentation

    @staticmethod
    def _segmentIdFor(segmentationNode, task: BoxTask) -> str:
        """The segment made from ``task``'s ROI earlier (renamed to the ROI's name), else a new one."""
        segmentation = segmentationNode.GetSegmentation()
        byName = None
        for segmentId in segmentation.GetSegmentIDs():
            segment = segmentation.GetSegment(segmentId)
            roiNodeId = vtk.reference("")
            if segment.GetTag(ROI_TAG, roiNodeId) and str(roiNodeId) == task.roiNodeId:
                segment.SetName(task.segmentName)
                return segmentId
            if byName is None and segment.GetName() == task.segmentName:
                byName = segmentId
        if byName is None:
            used = {tuple(round(c, 2) for c in segmentation.GetSegment(s).GetColor())
                    for s in segmentation.GetSegmentIDs()}
            free = [c for c in SEGMENT_COLORS if tuple(round(v, 2) for v in c) not in used]
            color = (free or SEGMENT_COLORS)[0 if free else
                                             segmentation.GetNumberOfSegments() % len(SEGMENT_COLORS)]
            byName = segmentation.AddEmptySegment("", task.segmentName, color)
        segmentation.GetSegment(byName).SetTag(ROI_TAG, task.roiNodeId)
        return byName

    @staticmethod
    def _replaceSlice(segmentationNode, segmentId, volume, mask, axis, sliceIndex) -> np.ndarray:
        """The segment's current voxels with only slice ``sliceIndex`` along ``axis`` from ``mask``."""
        current = slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, volume)
        if current is None or current.shape != mask.shape:
            current = np.zeros_like(mask)
        current = np.array(current, dtype=np.uint8)
        index = [slice(None)] * 3
        index[2 - axis] = sliceIndex
        current[tuple(index)] = mask[tuple(index)]
        return current

    # ------------------------------------------------------------------ corrections
    def canRefine(self, segmentationNode, segmentId: str) -> bool:
        """Whether the segment was made by a run of this logic and can be corrected."""
        return segmentationNode is not None and (segmentationNode.GetID(), segmentId) in self._refinements

    def _refinement(self, segmentationNode, segmentId: str):
        if segmentationNode is None or not segmentId:
            raise LiteMedSAMError("Select the segment to correct.")
        refinement = self._refinements.get((segmentationNode.GetID(), segmentId))
        if refinement is None:
            raise LiteMedSAMError(
                f"Segment '{segmentId}' of '{segmentationNode.GetName()}' was not made by LiteMedSAM in "
                "this session; segment its ROI first, then correct it with points or scribbles.")
        if slicer.mrmlScene.GetNodeByID(refinement.volumeNodeId) is None:
            raise LiteMedSAMError("The volume this segment was made from is no longer in the scene.")
        return refinement

    @staticmethod
    def createPromptNodes(name: str = "LiteMedSAM"):
        """New ``(object points, background points, scribbles)`` nodes for corrections: two
        markups point lists (green, red) and a segmentation with an object and a background
        scribble segment, ready for the Segment Editor's Paint effect."""
        from .segmentCorrection import BACKGROUND_SCRIBBLE, OBJECT_SCRIBBLE

        scene = slicer.mrmlScene
        nodes = []
        for suffix, color in (("object points", (0.2, 0.8, 0.2)), ("background points", (0.9, 0.2, 0.2))):
            node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", f"{name} {suffix}")
            node.CreateDefaultDisplayNodes()
            display = node.GetDisplayNode()
            display.SetSelectedColor(*color)
            display.SetColor(*color)
            nodes.append(node)
        scribbles = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{name} scribbles")
        scribbles.CreateDefaultDisplayNodes()
        scribbles.GetSegmentation().AddEmptySegment(OBJECT_SCRIBBLE, OBJECT_SCRIBBLE, (0.2, 0.8, 0.2))
        scribbles.GetSegmentation().AddEmptySegment(BACKGROUND_SCRIBBLE, BACKGROUND_SCRIBBLE, (0.9, 0.2, 0.2))
        return nodes[0], nodes[1], scribbles

    def refine(self, segmentationNode, segmentId: str, objectPoints=None, backgroundPoints=None,
               scribbles=None, propagate: bool = True) -> list[int]:
        """Correct a LiteMedSAM segment with the points and scribbles in these nodes.

        Args:
            segmentationNode, segmentId: a segment written by :meth:`applyResult`.
            objectPoints, backgroundPoints: markups point lists (positive / negative points).
            scribbles: a segmentation with "object scribble" / "background scribble" segments.
        Each call applies what changed in the nodes since the last one (new, moved or deleted
        points and scribbles): the slices with changed prompts are corrected, propagation
        re-runs outward from them, and only the slices that changed are written into the
        segment (other slices, also ones edited by hand, stay as they are). No encoder runs:
        the slice embeddings of the run are reused. Returns the changed slice indices (along
        the slicing axis); each call is one step of :meth:`undoRefinement`.

        With ``propagate=False`` only the corrected slices are updated (the GUI shows them at
        once); :meth:`propagatePending` then updates their neighbours, as part of the same step.
        """
        refinement = self._refinement(segmentationNode, segmentId)
        refinement.session.defer_propagation = not propagate
        try:
            changed = refinement.sync(objectPoints, backgroundPoints, scribbles)
        finally:
            refinement.session.defer_propagation = False
        self._writeSlices(segmentationNode, segmentId, refinement, changed)
        return changed

    def propagatePending(self, segmentationNode, segmentId: str) -> list[int]:
        """Finish a ``refine(..., propagate=False)``: propagate to the neighbouring slices and
        write those that change; returns them."""
        refinement = self._refinement(segmentationNode, segmentId)
        changed = refinement.session.propagate_pending()
        self._writeSlices(segmentationNode, segmentId, refinement, changed)
        return changed

    def canUndoRefinement(self, segmentationNode, segmentId: str) -> bool:
        return self.canRefine(segmentationNode, segmentId) and self._refinement(
            segmentationNode, segmentId).canUndo

    def undoRefinement(self, segmentationNode, segmentId: str) -> list[int]:
        """Undo the last :meth:`refine` (or slice clear/accept) of the segment, including the
        points it added, moved or deleted; returns the slices that went back."""
        refinement = self._refinement(segmentationNode, segmentId)
        changed = refinement.undo()
        self._writeSlices(segmentationNode, segmentId, refinement, changed)
        return changed

    def sliceIndexInView(self, segmentationNode, segmentId: str, sliceNode) -> int:
        """The slice of the segment's slicing axis that a slice view shows."""
        refinement = self._refinement(segmentationNode, segmentId)
        normal, point = slicePlane(sliceNode)
        ijkToWorld = np.linalg.inv(refinement.worldToIjk)
        if geometry.nearestIjkAxis(normal, ijkToWorld) != refinement.axis:
            raise LiteMedSAMError(f"View '{sliceNode.GetName()}' does not show slices along "
                                  f"{geometry.IJK_AXIS_NAMES[refinement.axis]}, the axis this segment "
                                  "was segmented along; use a view that does.")
        return geometry.sliceIndexOnPlane(refinement.axis, normal, point, point, refinement.worldToIjk)

    def clearSlice(self, segmentationNode, segmentId: str, sliceIndex: int) -> list[int]:
        """The object is absent from this slice: empty it and keep propagation from refilling it."""
        refinement = self._refinement(segmentationNode, segmentId)
        changed = refinement.apply(refinement.session.clear_slice, sliceIndex)
        self._writeSlices(segmentationNode, segmentId, refinement, changed)
        return changed

    def acceptSlice(self, segmentationNode, segmentId: str, sliceIndex: int, accept: bool = True) -> list[int]:
        """Lock (``accept``) or unlock a slice: corrections elsewhere never change a locked slice."""
        refinement = self._refinement(segmentationNode, segmentId)
        method = refinement.session.lock if accept else refinement.session.unlock
        changed = refinement.apply(method, sliceIndex)
        self._writeSlices(segmentationNode, segmentId, refinement, changed)
        return changed

    def _writeSlices(self, segmentationNode, segmentId, refinement, slices: Sequence[int]) -> None:
        """Copy the session's mask on ``slices`` (slicing axis) into the segment.

        Only those slices are written (one sub-volume per run of adjacent slices, through
        ``SetBinaryLabelmapToSegment`` as the Segment Editor's effects do), so a correction costs
        milliseconds on a 512 x 512 x 300 volume instead of a round trip of the whole
        segment, and slices edited by hand elsewhere stay as they are.
        """
        if not slices:
            return
        from vtk.util import numpy_support

        inverse = geometry.inversePermutation(refinement.permutation)
        imageToSegmentation = _worldToParent(segmentationNode) @ np.linalg.inv(refinement.worldToIjk)
        matrix = slicer.util.vtkMatrixFromArray(imageToSegmentation)
        logic = slicer.vtkSlicerSegmentationsModuleLogic
        for first, last in _runs(sorted(slices)):
            # These slices of the session's [slice, row, column] mask, back in [k, j, i] order.
            region = np.stack([refinement.session.slice_mask(z) for z in range(first, last + 1)])
            region = np.ascontiguousarray(region.transpose(inverse))
            extent = [0, region.shape[2] - 1, 0, region.shape[1] - 1, 0, region.shape[0] - 1]  # i, j, k
            extent[2 * refinement.axis] += first
            extent[2 * refinement.axis + 1] += first
            labelmap = slicer.vtkOrientedImageData()
            labelmap.SetExtent(*extent)
            labelmap.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
            numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars())[:] = region.ravel()
            labelmap.SetImageToWorldMatrix(matrix)
            # MODE_REPLACE would replace the whole segment; within the extent, MIN clears what
            # the new mask does not hold and MAX sets what it does, outside nothing changes.
            for mode in (logic.MODE_MERGE_MIN, logic.MODE_MERGE_MAX):
                if not logic.SetBinaryLabelmapToSegment(labelmap, segmentationNode, segmentId, mode,
                                                        labelmap.GetExtent()):
                    raise LiteMedSAMError(f"Could not write the corrected slices into segment '{segmentId}'.")

    # ------------------------------------------------------------------ undo
    def _history(self, segmentationNode):
        entry = self._histories.get(segmentationNode.GetID())
        if entry is None or entry[0] is not segmentationNode.GetSegmentation():
            history = slicer.vtkSegmentationHistory()
            history.SetMaximumNumberOfStates(10)
            history.SetSegmentation(segmentationNode.GetSegmentation())
            entry = (segmentationNode.GetSegmentation(), history)
            self._histories[segmentationNode.GetID()] = entry
        return entry[1]

    def canUndo(self, segmentationNode) -> bool:
        """Whether :meth:`undo` can restore ``segmentationNode`` to before a LiteMedSAM run."""
        entry = self._histories.get(segmentationNode.GetID()) if segmentationNode else None
        return bool(entry) and entry[1].IsRestorePreviousStateAvailable()

    def undo(self, segmentationNode) -> bool:
        """Restore the segmentation as it was before the last LiteMedSAM run on it.

        Its segments stop being correctable (their sessions describe what was undone)."""
        if not self.canUndo(segmentationNode):
            return False
        self._refinements = {key: r for key, r in self._refinements.items() if key[0] != segmentationNode.GetID()}
        return bool(self._histories[segmentationNode.GetID()][1].RestorePreviousState())


def _runs(values: Sequence[int]) -> list[tuple[int, int]]:
    """``[(first, last), ...]`` of the runs of consecutive integers in sorted ``values``."""
    runs: list[tuple[int, int]] = []
    for v in values:
        if runs and v == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


def createRoiFromVoxelBox(volumeNode, boxIjk: Sequence[int], name: str = "Box"):
    """Add an ROI node that covers exactly the voxels ``(i0, j0, k0, i1, j1, k1)`` (inclusive).

    The ROI is aligned with the volume's voxel grid (also for oblique volumes) and its faces lie
    on voxel boundaries, so :meth:`LiteMedSAMLogic.prepareJob` maps it back to the same box.
    Handy for scripts whose boxes come in voxel indices (e.g. from a table).
    """
    low = np.asarray(boxIjk[:3], dtype=float)
    high = np.asarray(boxIjk[3:], dtype=float)
    if np.any(high < low):
        raise LiteMedSAMError(f"voxel box {tuple(boxIjk)} is inverted (upper below lower bound)")
    ijkToWorld = np.linalg.inv(volumeWorldToIjk(volumeNode))
    axes = ijkToWorld[:3, :3]
    spacing = np.linalg.norm(axes, axis=0)
    objectToWorld = np.eye(4)
    objectToWorld[:3, :3] = axes / spacing
    objectToWorld[:3, 3] = (ijkToWorld @ np.r_[(low + high) / 2.0, 1.0])[:3]
    roi = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode", name)
    roi.CreateDefaultDisplayNodes()
    roi.GetObjectToNodeMatrix().DeepCopy(slicer.util.vtkMatrixFromArray(objectToWorld))
    roi.SetSize(*((high - low + 1.0) * spacing))
    return roi
