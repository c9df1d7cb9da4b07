"""An MRML scene without the Slicer application, for scripts and tests that run the logic with
the PyPI ``slicer-core`` package (no Qt). Inside Slicer, use ``slicer.mrmlScene`` instead.

The bootstrap follows the project's verified notes: the application logic first, then the
module logics that ``slicer.util`` looks up through ``slicer.modules.<name>.logic()``.
Headless, ``slicer.util.loadVolume`` and ``saveNode`` need the application; use
``slicer.modules.volumes.logic().AddArchetypeVolume(path, name)`` and a storage node's
``WriteData(node)``.
"""

from __future__ import annotations

import types


def makeScene():
    """A fresh MRML scene with the module logics the LiteMedSAM logic uses, set as
    ``slicer.mrmlScene``; the logics are kept alive on the scene object."""
    import slicer
    import vtk
    from slicer import (
        vtkMRMLScene,
        vtkSlicerApplicationLogic,
        vtkSlicerMarkupsLogic,
        vtkSlicerSegmentationsModuleLogic,
        vtkSlicerSubjectHierarchyModuleLogic,
        vtkSlicerVolumesLogic,
    )

    vtk.vtkObject.GlobalWarningDisplayOff()
    mrmlScene = vtkMRMLScene()
    app = vtkSlicerApplicationLogic()
    app.SetMRMLScene(mrmlScene)
    app.GetColorLogic().SetMRMLScene(mrmlScene)
    app.GetColorLogic().AddDefaultColorNodes()
    logics = {}
    for name, logic in [("Colors", app.GetColorLogic()),
                        ("SubjectHierarchy", vtkSlicerSubjectHierarchyModuleLogic()),
                        ("Volumes", vtkSlicerVolumesLogic()),
                        ("Segmentations", vtkSlicerSegmentationsModuleLogic()),
                        ("Markups", vtkSlicerMarkupsLogic())]:
        logic.SetMRMLApplicationLogic(app)
        logic.SetMRMLScene(mrmlScene)
        app.SetModuleLogic(name, logic)
        logics[name.lower()] = logic
    slicer.mrmlScene = mrmlScene
    slicer.modules = types.SimpleNamespace(
        **{k: types.SimpleNamespace(logic=lambda lg=lg: lg) for k, lg in logics.items()})
    mrmlScene.keepAlive = (app, logics)  # the logics must outlive the scene's use
    return mrmlScene
