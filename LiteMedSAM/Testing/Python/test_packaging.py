"""The extension ships every file it needs, its GUI names match the .ui, imports stay light."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

MODULE_DIR = Path(__file__).resolve().parents[2]
REPO_ROOT = MODULE_DIR.parent
MODULE_CMAKE = MODULE_DIR / "CMakeLists.txt"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "LiteMedSAM.ui"
MODULE_FILE = MODULE_DIR / "LiteMedSAM.py"


def cmakeList(text: str, variable: str) -> list[str]:
    """The items of ``set(variable ...)``, with ${MODULE_NAME} expanded."""
    match = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S)
    assert match, f"set({variable} ...) not found"
    moduleName = re.search(r"set\(MODULE_NAME\s+(\w+)\)", text).group(1)
    return [item.replace("${MODULE_NAME}", moduleName) for item in match.group(1).split()]


def filesUnder(folder: Path, exclude=("__pycache__",)) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")
            if p.is_file() and not set(p.relative_to(folder).parts) & set(exclude) and p.suffix != ".pyc"}


def test_cmake_lists_every_module_file():
    text = MODULE_CMAKE.read_text()
    listed = cmakeList(text, "MODULE_PYTHON_SCRIPTS") + cmakeList(text, "MODULE_PYTHON_RESOURCES")
    shipped = {f for f in filesUnder(MODULE_DIR, exclude=("__pycache__", "Testing"))
               if f not in ("CMakeLists.txt", "README.md")}
    assert sorted(shipped - set(listed)) == [], "files of the module missing from CMakeLists.txt"
    assert sorted(set(listed) - shipped) == [], "CMakeLists.txt lists files that do not exist"
    assert {Path(f).suffix for f in listed} >= {".py", ".ui", ".png"}


def test_cmake_ships_every_library_file_at_its_package_path():
    text = MODULE_CMAKE.read_text()
    listed = cmakeList(text, "LIBRARY_PYTHON_SCRIPTS") + cmakeList(text, "LIBRARY_PYTHON_RESOURCES")
    library = {f"LiteMedSAMLib/{f}" for f in filesUnder(REPO_ROOT / "LiteMedSAMLib")}
    assert sorted(library - set(listed)) == [], "LiteMedSAMLib files missing from LiteMedSAM/CMakeLists.txt"
    assert sorted(set(listed) - library) == [], "CMakeLists.txt lists LiteMedSAMLib files that do not exist"
    assert all(f.endswith(".py") for f in cmakeList(text, "LIBRARY_PYTHON_SCRIPTS"))
    assert re.search(r"SOURCE_DIR \$\{CMAKE_CURRENT_SOURCE_DIR\}/\.\.", text)  # paths are root-relative
    assert "DESTINATION_DIR ${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}" in text


def test_extension_metadata_is_complete_and_consistent():
    text = (REPO_ROOT / "CMakeLists.txt").read_text()
    fields = dict(re.findall(r'set\((EXTENSION_\w+)\s+"([^"]*)"\)', text))
    for name in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert fields.get(f"EXTENSION_{name}"), f"EXTENSION_{name} is empty"
    assert fields["EXTENSION_DEPENDS"] == "PyTorch" and fields["EXTENSION_CATEGORY"] == "Segmentation"
    assert "add_subdirectory(LiteMedSAM)" in text
    s4ext = dict(line.split(" ", 1) for line in (REPO_ROOT / "LiteMedSAM.s4ext").read_text().splitlines()
                 if line.strip() and not line.startswith("#"))
    assert s4ext["depends"] == "PyTorch" and s4ext["category"] == "Segmentation"
    assert s4ext["iconurl"] == fields["EXTENSION_ICONURL"]
    assert s4ext["screenshoturls"] == fields["EXTENSION_SCREENSHOTURLS"]
    assert s4ext["homepage"] == fields["EXTENSION_HOMEPAGE"]
    for url in (fields["EXTENSION_ICONURL"], *fields["EXTENSION_SCREENSHOTURLS"].split()):
        path = url.split("/main/", 1)[1]
        assert (REPO_ROOT / path).is_file(), f"{url} points to a file that is not in the repository"
    assert "Apache License" in (REPO_ROOT / "LICENSE").read_text()[:200]


def test_icon_is_128_pixels_and_the_extension_icon_is_the_modules():
    """Slicer reads the module's icon beside the module; the Extensions Index reads ICONURL
    from the extension's Resources/Icons: one picture, kept identical."""
    from PIL import Image

    moduleIcon = MODULE_DIR / "Resources" / "Icons" / "LiteMedSAM.png"
    extensionIcon = REPO_ROOT / "Resources" / "Icons" / "LiteMedSAM.png"
    assert Image.open(moduleIcon).size == (128, 128)
    assert extensionIcon.read_bytes() == moduleIcon.read_bytes()
    text = (REPO_ROOT / "CMakeLists.txt").read_text()
    assert "/main/Resources/Icons/LiteMedSAM.png" in text


def test_every_widget_hook_and_handler_has_a_one_line_docstring():
    """As Slicer's scripted module template: each method says what it is for."""
    tree = ast.parse(MODULE_FILE.read_text())
    missing = [f"{cls.name}.{f.name}" for cls in tree.body if isinstance(cls, ast.ClassDef)
               for f in cls.body if isinstance(f, ast.FunctionDef) and not ast.get_docstring(f)]
    assert missing == []


def uiWidgets() -> dict[str, ET.Element]:
    return {w.get("name"): w for w in ET.parse(UI_FILE).getroot().iter("widget")}


def test_every_widget_the_code_uses_is_in_the_ui_file():
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_FILE.read_text()))
    assert used, "no self.ui.<name> found"
    assert sorted(used - set(uiWidgets())) == []


def parameterNodeFields() -> set[str]:
    tree = ast.parse(MODULE_FILE.read_text())
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "LiteMedSAMParameterNode"]
    return {n.target.id for n in cls.body if isinstance(n, ast.AnnAssign)}


def test_ui_parameter_names_are_parameter_node_fields():
    names = {w.findtext("property[@name='SlicerParameterName']/string"): n for n, w in uiWidgets().items()}
    names.pop(None, None)
    assert set(names) <= parameterNodeFields()
    assert {"inputVolume", "outputSegmentation", "preset", "sliceViewName", "pipeline", "sliceExtent"} <= set(names)
    scene = {c.findtext("receiver") for c in ET.parse(UI_FILE).getroot().iter("connection")
             if c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    mrmlWidgets = {n for n, w in uiWidgets().items() if w.get("class").startswith("qMRML") and n != "LiteMedSAM"}
    assert mrmlWidgets <= scene, "MRML widgets without a scene connection"


def test_importing_the_logic_does_not_import_torch():
    code = ("import sys; sys.path[:0] = [%r, %r]; import LiteMedSAMLogic, LiteMedSAMLogic.worker; "
            "m = LiteMedSAMLogic.LiteMedSAMLogic(); m.availableModels(); m.missingDependencies(); "
            "assert 'torch' not in sys.modules and 'cv2' not in sys.modules, sorted(sys.modules)"
            % (str(MODULE_DIR), str(REPO_ROOT)))
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)


def test_module_file_imports_torch_lazily():
    tree = ast.parse(MODULE_FILE.read_text())
    topLevel = {alias.name.split(".")[0] for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])}
    assert not topLevel & {"torch", "cv2", "LiteMedSAMLib"}


@pytest.mark.parametrize("path", ["LiteMedSAM.py", "LiteMedSAMLogic/logic.py"])
def test_module_code_is_camel_case(path):
    """Slicer's style inside the module: camelCase functions and arguments (not snake_case)."""
    tree = ast.parse((MODULE_DIR / path).read_text())
    names = [n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and not n.name.startswith("test_")]
    names += [a.arg for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) for a in n.args.args + n.args.kwonlyargs]
    assert [n for n in names if re.search(r"[a-z]_[a-z]", n.strip("_"))] == []
