"""LiteMedSAM: box-prompted segmentation of CT, MR and 2D images with LiteMedSAM, on the CPU.

This file holds the Slicer classes (module, widget, parameter node, self-test). Every decision
lives in the Qt-free ``LiteMedSAMLogic`` package next to it, which tests run headless and
scripts use without the GUI. Importing this module imports neither torch nor the model.
"""

import os
import sys
import tempfile
import time
import traceback
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLMarkupsFiducialNode, vtkMRMLMarkupsROINode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin


def _addLibraryToPath() -> None:
    """Find LiteMedSAMLib: next to this file in an installed extension, at the repository root
    when the module is used from a source checkout (Developer Tools > Additional module paths)."""
    moduleDir = os.path.dirname(os.path.abspath(__file__))
    for folder in (moduleDir, os.path.dirname(moduleDir)):
        if os.path.isfile(os.path.join(folder, "LiteMedSAMLib", "__init__.py")):
            if folder not in sys.path:
                sys.path.insert(0, folder)
            return


_addLibraryToPath()

from LiteMedSAMLogic import PRESET_NAMES, LiteMedSAMLogic, createRoiFromVoxelBox, dependencies  # noqa: E402
from LiteMedSAMLogic.logic import PIPELINE_NAMES, SLICE_EXTENTS  # noqa: E402
from LiteMedSAMLogic.worker import CANCELLED, DONE, RUNNING, BackgroundRun  # noqa: E402

SLICE_VIEW_NAMES = ("Red", "Yellow", "Green")


#
# LiteMedSAM
#


class LiteMedSAM(ScriptedLoadableModule):
    """Module metadata. Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        """Module metadata: title, category, help and acknowledgement."""
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("LiteMedSAM")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["LiteMedSAM for Slicer contributors"]
        self.parent.helpText = _("""
Segment structures in CT, MR or 2D/RGB images by drawing a box around them. LiteMedSAM (the
CVPR 2024 "MedSAM on laptop" baseline) runs on the CPU.
<ol>
<li>Select the input volume, the model and the intensity preset (CT window or MR).</li>
<li>Click <b>Place box</b> and draw a box (ROI) around each structure in a slice view.</li>
<li>Click <b>Segment current slice</b> (the slice shown in the selected view) or
<b>Segment volume</b> (all slices of each box). Each box becomes its own segment.</li>
<li>To fix a segment, open <b>Correct</b>: click <b>Object points</b> or <b>Background points</b>
and click where the segment misses something or covers too much, or paint scribbles; the
segment follows each change (no image encoding), and <b>Undo correction</b> takes it back.</li>
</ol>
The first run offers to install PyTorch, OpenCV and the model weights.
See the <a href="https://github.com/litemedsam/SlicerLiteMedSAM/blob/main/LiteMedSAM/README.md">module
documentation</a>.
""")
        self.parent.acknowledgementText = _("""
LiteMedSAM: J. Ma, Y. He, F. Li, L. Han, C. You, B. Wang, "Segment anything in medical images",
Nature Communications 15, 654 (2024), and the CVPR 2024 MedSAM on Laptop challenge baseline
(bowang-lab/MedSAM, LiteMedSAM branch, Apache-2.0).
""")


#
# LiteMedSAMParameterNode
#


@parameterNodeWrapper
class LiteMedSAMParameterNode:
    """The user's choices, saved with the scene.

    inputVolume - the image to segment.
    roiNodes - the ROI boxes to segment (one segment each).
    outputSegmentation - where the segments go (created on the first run if None).
    modelName - registered model name ("" = the default model).
    preset - intensity preset (see LiteMedSAMLogic.PRESET_NAMES).
    pipeline - "default" (the measured best) or "official" (the official LiteMedSAM pipeline).
    sliceExtent - "automatic": each box is segmented from the slice it was drawn on, up and down
        until the object ends; "roi": within the ROI's own extent along the slices.
    sliceViewName - the view whose slice "Segment current slice" segments.
    objectPoints, backgroundPoints, scribbles - the correction prompts (created on first use).
    """

    inputVolume: vtkMRMLScalarVolumeNode
    roiNodes: list[vtkMRMLMarkupsROINode]
    outputSegmentation: vtkMRMLSegmentationNode
    modelName: str = ""
    preset: Annotated[str, Choice(list(PRESET_NAMES))] = "auto"
    pipeline: Annotated[str, Choice(list(PIPELINE_NAMES))] = "default"
    sliceExtent: Annotated[str, Choice(list(SLICE_EXTENTS))] = "automatic"
    sliceViewName: Annotated[str, Choice(list(SLICE_VIEW_NAMES))] = "Red"
    objectPoints: vtkMRMLMarkupsFiducialNode
    backgroundPoints: vtkMRMLMarkupsFiducialNode
    scribbles: vtkMRMLSegmentationNode


#
# LiteMedSAMWidget
#


class LiteMedSAMWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The GUI: shows the parameter node, starts runs in a background thread, shows progress."""

    def __init__(self, parent=None) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._run = None
        self._job = None

    def setup(self) -> None:
        """Called when the user opens the module the first time: builds the GUI from the .ui file."""
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LiteMedSAM.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = LiteMedSAMLogic()
        for name, title in self.logic.availableModels().items():
            self.ui.modelComboBox.addItem(title, name)
        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(100)
        self._pollTimer.connect("timeout()", self._pollRun)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.placeBoxButton.connect("clicked(bool)", self.onPlaceBox)
        self.ui.segmentSliceButton.connect("clicked(bool)", lambda: self.onSegment(sliceMode=True))
        self.ui.segmentVolumeButton.connect("clicked(bool)", lambda: self.onSegment(sliceMode=False))
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.undoButton.connect("clicked(bool)", self.onUndo)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChanged)
        self.ui.roiSelector.connect("checkedNodesChanged()", self.onRoiSelectionChanged)
        self._setupCorrection()
        self._showRunning(False)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        if self._run is not None:
            self._run.cancel()
        self._pollTimer.stop()
        self.removeObservers()

    def enter(self) -> None:
        """Called each time the user opens this module."""
        self.initializeParameterNode()

    def exit(self) -> None:
        """Called each time the user opens a different module."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)

    def onSceneStartClose(self, caller, event) -> None:
        """Called just before the scene is closed: stop the run, forget scene-bound state."""
        if self._run is not None:
            self._run.cancel()
        for node, promptEvent in self._observedPrompts:
            self.removeObserver(node, promptEvent, self._onPromptsModified)
        self._observedPrompts = []
        self.logic.forgetScene()  # node IDs are reused by the next scene
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        """Called just after the scene is closed: a fresh parameter node if the module is shown."""
        if self.parent.isEntered:
            self.initializeParameterNode()

    # ------------------------------------------------------------------ parameter node
    def initializeParameterNode(self) -> None:
        """Ensure a parameter node exists, with an input volume chosen if the scene has one."""
        self.setParameterNode(LiteMedSAMParameterNode(self.logic.getParameterNode()))
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode:
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode) -> None:
        """Connect the GUI to a parameter node and observe it, instead of the previous one."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
            self._updateGui()

    def _checkedRois(self) -> list:
        """The ROI nodes checked in the selector (none without a parameter node)."""
        return [roi for roi in self._parameterNode.roiNodes if roi is not None] if self._parameterNode else []

    def _updateGui(self, caller=None, event=None) -> None:
        """Show the parameter node's model and ROI choices; enable what can be done now."""
        if not self._parameterNode:
            return
        wasBlocked = self.ui.modelComboBox.blockSignals(True)
        index = self.ui.modelComboBox.findData(self._parameterNode.modelName or self.logic.defaultModelName())
        self.ui.modelComboBox.currentIndex = max(index, 0)
        self.ui.modelComboBox.blockSignals(wasBlocked)
        wasBlocked = self.ui.roiSelector.blockSignals(True)
        checked = {roi.GetID() for roi in self._checkedRois()}
        for n in range(self.ui.roiSelector.nodeCount()):
            node = self.ui.roiSelector.nodeFromIndex(n)
            self.ui.roiSelector.setCheckState(node, qt.Qt.Checked if node.GetID() in checked else qt.Qt.Unchecked)
        self.ui.roiSelector.blockSignals(wasBlocked)
        canRun = self._run is None and self._parameterNode.inputVolume is not None and bool(checked)
        self.ui.segmentSliceButton.enabled = canRun
        self.ui.segmentVolumeButton.enabled = canRun
        hint = _("Select an input volume and place or check at least one box.")
        if self._run is None and not canRun:
            self.ui.statusLabel.text = hint
        elif self.ui.statusLabel.text == hint:
            self.ui.statusLabel.text = ""
        self.ui.undoButton.enabled = self._run is None and self.logic.canUndo(self._parameterNode.outputSegmentation)
        self._updateCorrectionGui()

    def onModelChanged(self, index) -> None:
        """Store the chosen model name in the parameter node."""
        if self._parameterNode:
            self._parameterNode.modelName = self.ui.modelComboBox.itemData(index) or ""

    def onRoiSelectionChanged(self) -> None:
        """Store the checked ROIs in the parameter node."""
        if self._parameterNode:
            self._parameterNode.roiNodes = list(self.ui.roiSelector.checkedNodes())

    # ------------------------------------------------------------------ actions
    def onPlaceBox(self) -> None:
        """Add a new ROI, check it, and start placing it in the views."""
        roi = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode", slicer.mrmlScene.GenerateUniqueName("Box"))
        roi.CreateDefaultDisplayNodes()
        self._parameterNode.roiNodes = self._checkedRois() + [roi]
        selectionNode = slicer.app.applicationLogic().GetSelectionNode()
        selectionNode.SetReferenceActivePlaceNodeClassName("vtkMRMLMarkupsROINode")
        selectionNode.SetActivePlaceNodeID(roi.GetID())
        interactionNode = slicer.app.applicationLogic().GetInteractionNode()
        interactionNode.SetPlaceModePersistence(0)
        interactionNode.SetCurrentInteractionMode(interactionNode.Place)

    def onSegment(self, sliceMode: bool) -> None:
        """Prepare the job here (reads MRML), run it in a background thread, apply it when done."""
        with slicer.util.tryWithErrorDisplay(_("LiteMedSAM could not start."), waitCursor=True):
            parameters = self._parameterNode
            modelName = parameters.modelName or None
            if not self._ensureDependencies(modelName):
                return
            sliceNode = None
            if sliceMode:
                sliceNode = slicer.app.layoutManager().sliceWidget(parameters.sliceViewName).mrmlSliceNode()
            job = self.logic.prepareJob(parameters.inputVolume, self._checkedRois(), sliceNode=sliceNode,
                                        modelName=modelName, preset=parameters.preset,
                                        pipeline=parameters.pipeline, sliceExtent=parameters.sliceExtent)
            self._job = job
            self._run = BackgroundRun(lambda progress, shouldCancel: self.logic.runJob(job, progress, shouldCancel))
            self._showRunning(True)
            self.ui.statusLabel.text = "\n".join(job.warnings) or _("Segmenting...")
            self._run.start()
            self._pollTimer.start()

    def _ensureDependencies(self, modelName) -> bool:
        """Offer to install missing packages; False if the user declines."""
        missing = self.logic.missingDependencies(modelName)
        if not missing:
            return True
        question = dependencies.describeMissing(missing) + "\n\n" + _(
            "Install them now? They are downloaded from the internet; this may take several minutes.")
        if not slicer.util.confirmOkCancelDisplay(question, windowTitle=_("LiteMedSAM: install dependencies")):
            return False
        self.ui.statusLabel.text = _("Installing Python packages...")
        slicer.app.processEvents()
        self.logic.installDependencies(modelName)  # a clear ValueError when it cannot (offline)
        self.ui.statusLabel.text = ""
        return True

    def _pollRun(self) -> None:
        """Main thread, every 100 ms: show progress; apply the result when the run ends."""
        state, progress = self._run.poll()
        if progress:
            done, total = progress
            self.ui.progressBar.maximum = total
            self.ui.progressBar.value = done
        if state == RUNNING:
            return
        self._pollTimer.stop()
        run, job, self._run, self._job = self._run, self._job, None, None
        self._showRunning(False)
        if state == DONE:
            with slicer.util.tryWithErrorDisplay(_("LiteMedSAM could not write the result."), waitCursor=True):
                segmentation = self.logic.applyResult(job, run.result, self._parameterNode.outputSegmentation)
                self._parameterNode.outputSegmentation = segmentation
                self._ensurePromptNodes()  # the new segments can be corrected: points and scribbles ready
                self.ui.statusLabel.text = _("Segmented {count} box(es).").format(count=len(job.tasks))
        elif state == CANCELLED:
            self.ui.statusLabel.text = _("Cancelled; the segmentation was not changed.")
        else:
            self.ui.statusLabel.text = _("Failed: {error}").format(error=run.error)
            slicer.util.errorDisplay(_("LiteMedSAM failed: {error}").format(error=run.error),
                                     detailedText="".join(traceback.format_exception(
                                         type(run.error), run.error, run.error.__traceback__)))
        self._updateGui()

    def onCancel(self) -> None:
        """Ask the running segmentation to stop after its current slice."""
        if self._run is not None:
            self._run.cancel()
            self.ui.statusLabel.text = _("Cancelling after the current slice...")

    def onUndo(self) -> None:
        """Restore the output segmentation as it was before the last run."""
        if self.logic.undo(self._parameterNode.outputSegmentation):
            self.ui.statusLabel.text = _("Restored the segmentation as it was before the last run.")
        self._updateGui()

    # ------------------------------------------------------------------ corrections
    def _setupCorrection(self) -> None:
        """Point buttons, the embedded scribble editor (Paint/Erase only) and slice buttons."""
        self._observedPrompts = []
        self._refineTimer = qt.QTimer()  # painting fires many events: correct once it settles
        self._refineTimer.setSingleShot(True)
        self._refineTimer.setInterval(150)
        self._refineTimer.connect("timeout()", self.onRefine)
        self.scribbleEditor = slicer.qMRMLSegmentEditorWidget()
        self.scribbleEditor.setMRMLScene(slicer.mrmlScene)
        self.scribbleEditor.setEffectNameOrder(["Paint", "Erase"])
        self.scribbleEditor.unorderedEffectsVisible = False
        self.scribbleEditor.setSwitchToSegmentationsButtonVisible(False)
        self.ui.scribbleEditorPlaceholder.layout().addWidget(self.scribbleEditor)
        self.ui.addObjectPointButton.connect("toggled(bool)", lambda on: self.onPlacePoints(True, on))
        self.ui.addBackgroundPointButton.connect("toggled(bool)", lambda on: self.onPlacePoints(False, on))
        self.ui.acceptSliceButton.connect("clicked(bool)", lambda: self.onSliceAction(accept=True))
        self.ui.clearSliceButton.connect("clicked(bool)", lambda: self.onSliceAction(accept=False))
        self.ui.undoCorrectionButton.connect("clicked(bool)", self.onUndoCorrection)
        self.ui.correctSegmentComboBox.connect("currentIndexChanged(int)", lambda i: self._updateCorrectionGui())
        interactionNode = slicer.app.applicationLogic().GetInteractionNode()
        self.addObserver(interactionNode, interactionNode.InteractionModeChangedEvent, self._onInteractionModeChanged)

    def _onInteractionModeChanged(self, caller=None, event=None) -> None:
        """Placement ended (right-click, Esc, another tool): show the point buttons as off."""
        if caller.GetCurrentInteractionMode() != caller.Place:
            for button in (self.ui.addObjectPointButton, self.ui.addBackgroundPointButton):
                wasBlocked = button.blockSignals(True)
                button.checked = False
                button.blockSignals(wasBlocked)

    def _correctionTarget(self):
        """``(segmentation node, segment ID)`` chosen for correction, or ``(None, "")``."""
        segmentation = self._parameterNode.outputSegmentation if self._parameterNode else None
        segmentId = self.ui.correctSegmentComboBox.currentData or ""
        return (segmentation, segmentId) if segmentation is not None and segmentId else (None, "")

    def _ensurePromptNodes(self) -> None:
        """Create the point lists and scribble segmentation on first use; observe them."""
        parameters = self._parameterNode
        if not (parameters.objectPoints and parameters.backgroundPoints and parameters.scribbles):
            parameters.objectPoints, parameters.backgroundPoints, parameters.scribbles = \
                self.logic.createPromptNodes()
        self._observePrompts()

    def _observePrompts(self) -> None:
        """Observe the current point lists and scribbles, so that edits start a correction."""
        for node, event in self._observedPrompts:
            self.removeObserver(node, event, self._onPromptsModified)
        self._observedPrompts = []
        parameters = self._parameterNode
        for node in (parameters.objectPoints, parameters.backgroundPoints):
            if node is not None:
                for event in (node.PointPositionDefinedEvent, node.PointRemovedEvent, node.PointEndInteractionEvent):
                    self.addObserver(node, event, self._onPromptsModified)
                    self._observedPrompts.append((node, event))
        if parameters.scribbles is not None:
            editorNode = self.scribbleEditor.mrmlSegmentEditorNode()
            if editorNode is None or editorNode.GetScene() is None:  # first use, or the scene was closed
                editorNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode",
                                                                "LiteMedSAM scribble editor")
                self.scribbleEditor.setMRMLSegmentEditorNode(editorNode)
            self.scribbleEditor.setSegmentationNode(parameters.scribbles)
            self.scribbleEditor.setSourceVolumeNode(parameters.inputVolume)
            event = slicer.vtkSegmentation.SegmentModified
            self.addObserver(parameters.scribbles.GetSegmentation(), event, self._onPromptsModified)
            self._observedPrompts.append((parameters.scribbles.GetSegmentation(), event))

    def _onPromptsModified(self, caller=None, event=None) -> None:
        """A point or scribble changed: correct after a short pause (edits are batched)."""
        self._refineTimer.start()

    def onPlacePoints(self, positive: bool, on: bool) -> None:
        """Toggle persistent placement of object (positive) or background points."""
        other = self.ui.addBackgroundPointButton if positive else self.ui.addObjectPointButton
        interactionNode = slicer.app.applicationLogic().GetInteractionNode()
        if not on:
            if not other.checked:
                interactionNode.SwitchToViewTransformMode()
            return
        with slicer.util.tryWithErrorDisplay(_("Cannot place correction points."), waitCursor=True):
            other.checked = False
            self._ensurePromptNodes()
            node = self._parameterNode.objectPoints if positive else self._parameterNode.backgroundPoints
            selectionNode = slicer.app.applicationLogic().GetSelectionNode()
            selectionNode.SetReferenceActivePlaceNodeClassName("vtkMRMLMarkupsFiducialNode")
            selectionNode.SetActivePlaceNodeID(node.GetID())
            interactionNode.SetPlaceModePersistence(1)
            interactionNode.SetCurrentInteractionMode(interactionNode.Place)

    def onRefine(self) -> None:
        """Apply what changed in the points and scribbles to the chosen segment."""
        segmentation, segmentId = self._correctionTarget()
        if segmentation is None or not self.logic.canRefine(segmentation, segmentId):
            return
        parameters = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("LiteMedSAM could not apply the correction."), waitCursor=True):
            # The corrected slice first (shown at once), its neighbours right after.
            start = time.perf_counter()
            changed = self.logic.refine(segmentation, segmentId, parameters.objectPoints,
                                        parameters.backgroundPoints, parameters.scribbles, propagate=False)
            slicer.app.processEvents()
            changed = sorted(set(changed) | set(self.logic.propagatePending(segmentation, segmentId)))
            if changed:
                self.ui.statusLabel.text = _("Corrected slices {first}-{last} ({ms:.0f} ms).").format(
                    first=changed[0], last=changed[-1], ms=1000 * (time.perf_counter() - start))
        self._updateCorrectionGui()

    def onSliceAction(self, accept: bool) -> None:
        """Accept (lock) or clear the chosen segment on the slice shown in the correction view."""
        segmentation, segmentId = self._correctionTarget()
        with slicer.util.tryWithErrorDisplay(_("LiteMedSAM could not change the slice."), waitCursor=True):
            sliceNode = slicer.app.layoutManager().sliceWidget(self._parameterNode.sliceViewName).mrmlSliceNode()
            index = self.logic.sliceIndexInView(segmentation, segmentId, sliceNode)
            if accept:
                self.logic.acceptSlice(segmentation, segmentId, index)
            else:
                self.logic.clearSlice(segmentation, segmentId, index)
        self._updateCorrectionGui()

    def onUndoCorrection(self) -> None:
        """Undo the last correction of the chosen segment, points included."""
        segmentation, segmentId = self._correctionTarget()
        with slicer.util.tryWithErrorDisplay(_("LiteMedSAM could not undo the correction."), waitCursor=True):
            for node, event in self._observedPrompts:  # the undo moves points itself
                self.removeObserver(node, event, self._onPromptsModified)
            try:
                self.logic.undoRefinement(segmentation, segmentId)
            finally:
                self._observePrompts()
        self._updateCorrectionGui()

    def _updateCorrectionGui(self) -> None:
        """List the correctable segments; enable the buttons that apply now."""
        segmentation = self._parameterNode.outputSegmentation if self._parameterNode else None
        combo = self.ui.correctSegmentComboBox
        current = combo.currentData
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        if segmentation is not None:
            for segmentId in segmentation.GetSegmentation().GetSegmentIDs():
                if self.logic.canRefine(segmentation, segmentId):
                    combo.addItem(segmentation.GetSegmentation().GetSegment(segmentId).GetName(), segmentId)
        combo.currentIndex = max(combo.findData(current), 0) if current and combo.count else (0 if combo.count else -1)
        combo.blockSignals(wasBlocked)
        target = self._correctionTarget()
        can = self._run is None and target[0] is not None
        for button in (self.ui.addObjectPointButton, self.ui.addBackgroundPointButton,
                       self.ui.acceptSliceButton, self.ui.clearSliceButton):
            button.enabled = can
        self.scribbleEditor.enabled = can
        self.ui.undoCorrectionButton.enabled = can and self.logic.canUndoRefinement(*target)
        if can and self._parameterNode.scribbles is not None and not self._observedPrompts:
            self._observePrompts()

    def _showRunning(self, running: bool) -> None:
        """Show the progress bar and Cancel button while a run is in progress."""
        self.ui.progressBar.visible = running
        self.ui.cancelButton.visible = running
        self.ui.progressBar.value = 0
        if running:
            for button in (self.ui.segmentSliceButton, self.ui.segmentVolumeButton, self.ui.undoButton):
                button.enabled = False


#
# LiteMedSAMTest
#


class LiteMedSAMTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Developer Tools > Reload and Test, or ctest): the same checks as the
    headless tests, on the library's example brain MR given an oblique, anisotropic geometry."""

    def setUp(self):
        """Start each test from an empty scene."""
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Run all the tests of this module (Slicer's Reload and Test)."""
        self.setUp()
        self.test_GeometryAndBadInputs()
        self.setUp()
        self.test_SegmentVolumeAndSlice()

    def _loadObliqueExample(self):
        """The shipped example as a volume node with non-identity spacing, origin and direction."""
        import numpy as np
        import SimpleITK as sitk

        from LiteMedSAMLib.example import EXAMPLE_IMAGE

        image = sitk.ReadImage(str(EXAMPLE_IMAGE), sitk.sitkFloat32)
        angle = np.radians(20)
        tilt = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
        image.SetDirection((tilt @ np.diag([-1.0, -1.0, 1.0])).ravel().tolist())
        image.SetSpacing((0.9, 1.1, 1.3))
        image.SetOrigin((-30.5, 12.25, 40.0))
        path = os.path.join(tempfile.mkdtemp(), "oblique.nrrd")
        sitk.WriteImage(image, path)
        volume = slicer.modules.volumes.logic().AddArchetypeVolume(path, "oblique example")
        self.assertIsNotNone(volume)
        return volume, image

    def test_GeometryAndBadInputs(self):
        """ROI to voxel box on an oblique volume, and clear errors for bad inputs."""
        self.delayDisplay("ROI to voxel box on an oblique volume; bad inputs")
        volume, image = self._loadObliqueExample()
        logic = LiteMedSAMLogic(mode="exact")
        box = (14, 79, 8, 62, 130, 12)
        roi = createRoiFromVoxelBox(volume, box, "Left temporal lobe")
        if logic.missingDependencies():
            self.delayDisplay("Installing LiteMedSAM's Python dependencies")
            logic.installDependencies()
        job = logic.prepareJob(volume, [roi], preset="mr")
        self.assertEqual(job.tasks[0].boxIjk, box)
        self.assertEqual(job.axis, 2)
        far = createRoiFromVoxelBox(volume, (300, 10, 2, 320, 20, 6), "Far box")
        with self.assertRaisesRegex(ValueError, "does not intersect the volume"):
            logic.prepareJob(volume, [far], preset="mr")
        with self.assertRaisesRegex(ValueError, "No input volume"):
            logic.process(None, [roi])
        with self.assertRaisesRegex(ValueError, "No ROI box given"):
            logic.process(volume, [])
        redSliceNode = slicer.app.layoutManager().sliceWidget("Red").mrmlSliceNode()
        redSliceNode.SetOrientation("Sagittal")
        center = [0.0, 0.0, 0.0]
        roi.GetCenterWorld(center)
        redSliceNode.JumpSliceByCentering(*center)
        sagittalJob = logic.prepareJob(volume, [roi], sliceNode=redSliceNode, preset="mr")
        self.assertEqual(sagittalJob.axis, 0)
        redSliceNode.SetOrientation("Axial")
        self.delayDisplay("Geometry test passed")

    def test_SegmentVolumeAndSlice(self):
        """Segment volume and slice modes write the library's masks into segments; corrections undo."""
        import numpy as np
        import SimpleITK as sitk

        from LiteMedSAMLib.errors import SegmentationCancelled
        from LiteMedSAMLib.example import EXAMPLE_LABEL
        from LiteMedSAMLib.predictor import VolumePredictor
        from LiteMedSAMLib.propagation import segment_volume

        self.delayDisplay("Segment two boxes over 5 slices")
        volume, image = self._loadObliqueExample()
        boxes = {"Left temporal lobe": (14, 79, 8, 62, 130, 12), "Right temporal lobe": (94, 79, 8, 142, 130, 12)}
        rois = [createRoiFromVoxelBox(volume, box, name) for name, box in boxes.items()]
        source = slicer.util.arrayFromVolume(volume).copy()
        logic = LiteMedSAMLogic(mode="exact")
        if logic.missingDependencies():
            logic.installDependencies()
        segmentationNode = logic.process(volume, rois, preset="mr", pipeline="official", sliceExtent="roi")

        predictor = VolumePredictor(logic._loadModel(logic.defaultModelName()))
        predictor.set_volume(sitk.GetArrayFromImage(image), preset="mr")
        expected = segment_volume(predictor, list(boxes.values()), pipeline="official")
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(EXAMPLE_LABEL)))
        segmentation = segmentationNode.GetSegmentation()
        self.assertEqual([segmentation.GetNthSegment(n).GetName() for n in range(2)], list(boxes))
        self.assertNotEqual(segmentation.GetNthSegment(0).GetColor(), segmentation.GetNthSegment(1).GetColor())
        for labelValue, (name, mask) in enumerate(zip(boxes, expected), start=1):
            segmentId = segmentation.GetSegmentIdBySegmentName(name)
            actual = slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, volume)
            self.assertGreater(self._dice(actual, mask), 0.999)
            k0, k1 = boxes[name][2], boxes[name][5]
            self.assertGreater(self._dice(actual[k0:k1 + 1], labels[k0:k1 + 1] == labelValue), 0.6)
        self.assertTrue(np.array_equal(slicer.util.arrayFromVolume(volume), source))

        self.delayDisplay("Save and reload as .seg.nrrd")
        path = os.path.join(tempfile.mkdtemp(), "result.seg.nrrd")
        self.assertTrue(slicer.util.saveNode(segmentationNode, path))
        reloaded = slicer.util.loadSegmentation(path)
        written = sitk.ReadImage(path)
        np.testing.assert_allclose(written.GetOrigin(), image.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(written.GetDirection(), image.GetDirection(), atol=1e-5)
        for name in boxes:
            a = slicer.util.arrayFromSegmentBinaryLabelmap(
                reloaded, reloaded.GetSegmentation().GetSegmentIdBySegmentName(name), volume)
            b = slicer.util.arrayFromSegmentBinaryLabelmap(
                segmentationNode, segmentation.GetSegmentIdBySegmentName(name), volume)
            self.assertTrue(np.array_equal(a, b))

        self.delayDisplay("Cancel mid-sweep, then undo a re-run")
        before = slicer.util.arrayFromSegmentBinaryLabelmap(
            segmentationNode, segmentation.GetSegmentIdBySegmentName("Left temporal lobe"), volume)
        calls = []
        with self.assertRaises(SegmentationCancelled):
            logic.process(volume, rois, segmentationNode, preset="mr", pipeline="official", sliceExtent="roi",
                          progressCallback=lambda d, t: calls.append(d),
                          shouldCancel=lambda: len(calls) >= 2)
        redSliceNode = slicer.app.layoutManager().sliceWidget("Red").mrmlSliceNode()
        redSliceNode.SetOrientation("Axial")
        ijkToRas = vtk.vtkMatrix4x4()
        volume.GetIJKToRASMatrix(ijkToRas)
        redSliceNode.JumpSliceByCentering(*ijkToRas.MultiplyPoint((38, 104, 10, 1))[:3])
        logic.process(volume, rois[:1], segmentationNode, sliceNode=redSliceNode, preset="mr",
                      pipeline="official", sliceExtent="roi")
        self.assertTrue(logic.undo(segmentationNode))
        after = slicer.util.arrayFromSegmentBinaryLabelmap(
            segmentationNode, segmentation.GetSegmentIdBySegmentName("Left temporal lobe"), volume)
        self.assertTrue(np.array_equal(before, after))

        self.delayDisplay("Correct a segment with an object point, then undo it")
        objectPoints, backgroundPoints, scribbles = logic.createPromptNodes()
        segmentId = segmentation.GetSegmentIdBySegmentName("Right temporal lobe")
        before = slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, volume).copy()
        objectPoints.AddControlPointWorld(*ijkToRas.MultiplyPoint((120, 100, 10, 1))[:3])
        changed = logic.refine(segmentationNode, segmentId, objectPoints, backgroundPoints, scribbles)
        self.assertIn(10, changed)
        corrected = slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, volume)
        self.assertEqual(corrected[10, 100, 120], 1)
        logic.undoRefinement(segmentationNode, segmentId)
        self.assertEqual(objectPoints.GetNumberOfControlPoints(), 0)
        self.assertTrue(np.array_equal(
            slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, volume), before))
        self.delayDisplay("Segmentation test passed")

    @staticmethod
    def _dice(a, b) -> float:
        """The library's Dice (one definition for the CLI, the benchmark and these tests)."""
        from LiteMedSAMLib.evaluation.metrics import dice

        return dice(a, b)
