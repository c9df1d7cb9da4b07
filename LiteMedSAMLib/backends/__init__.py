"""Inference backends: one entry point, :func:`make_predictor`, picks the encoder/decoder of a mode.

Modes (measured by ``litemedsam benchmark``; see the README's *Speed* section):

- ``"exact"`` (default): OpenVINO float32 encoder and decoder; masks identical to eager PyTorch
  and to the official script.
- ``"fast"``: OpenVINO with bfloat16 arithmetic in the encoder (decoder float32); small
  differences in the masks, reported by the benchmark.
- ``"torch"``: eager PyTorch, the library's plain path (no optional dependency).

Every mode keeps the predictor's embedding cache (each slice encoded once for all boxes and
re-prompts). When OpenVINO is not installed, or conversion fails, the predictor falls back to
eager PyTorch and logs why; it never fails for lack of a backend.
"""

from __future__ import annotations

import importlib.util
import logging

log = logging.getLogger(__name__)

# mode -> (encoder precision, uses OpenVINO). Data, so the CLI, Slicer and benchmark share it.
MODES: dict[str, tuple[str, bool]] = {
    "exact": ("f32", True),
    "fast": ("bf16", True),
    "torch": ("f32", False),
}
DEFAULT_MODE = "exact"


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def cpu_runs_bf16() -> bool:
    """True when OpenVINO is installed and its CPU plug-in has native bfloat16 (AVX512_BF16 or
    AMX): only there is ``fast`` faster than ``exact``."""
    if not openvino_available():
        return False
    try:
        import openvino

        return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # an odd plug-in: say no, exact mode works everywhere
        return False


def interactive_mode() -> str:
    """The mode an interactive tool (the Slicer module) uses by default: ``fast`` where the CPU
    runs bfloat16, else ``exact``. On the labelled suite ``fast`` scored as ``exact`` against the
    labels (mean DSC 0.752 vs 0.751 with the default pipeline, 0.705 vs 0.705 with the official
    one; README, *Accuracy*), so a clinician gets the faster sweep at no measured cost; scripts,
    the CLI and the parity tests keep ``exact`` (masks identical to the official script)."""
    return "fast" if cpu_runs_bf16() else DEFAULT_MODE


def make_backend(model, mode: str = DEFAULT_MODE, threads: int | None = None, folder=None):
    """``(encoder, decoder, used_mode)`` callables for ``VolumePredictor``; ``(None, None, "torch")``
    means eager PyTorch (asked for, or the fallback)."""
    from ..errors import LiteMedSAMError

    if mode not in MODES:
        raise LiteMedSAMError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    precision, uses_openvino = MODES[mode]
    if not uses_openvino:
        return None, None, "torch"
    if not openvino_available():
        log.warning("mode %r needs OpenVINO (pip install 'litemedsam-slicer[fast]'); "
                    "using eager PyTorch instead (slower, same masks)", mode)
        return None, None, "torch"
    try:
        from .openvino_backend import OpenVINODecoder, OpenVINOEncoder

        encoder = OpenVINOEncoder(model, precision, threads=threads, folder=folder)
        decoder = OpenVINODecoder(model, threads=threads, folder=folder)
    except Exception as exc:  # conversion or a CPU plug-in problem: never worse than eager
        log.warning("OpenVINO backend unavailable (%s: %s); using eager PyTorch", type(exc).__name__, exc)
        return None, None, "torch"
    return encoder, decoder, mode


def make_predictor(model=None, mode: str = DEFAULT_MODE, threads: int | None = None,
                   cache_slices: int | None = None, folder=None):
    """A :class:`~LiteMedSAMLib.predictor.VolumePredictor` running ``mode``.

    Args:
        model: a loaded model or a registered model name (``None``: the default model).
        mode: a key of :data:`MODES`.
        threads: CPU threads for the backend (``None``: its default).
        cache_slices: embedding cache size (``None``: the predictor's default).
        folder: where converted models are cached (``None``: ``LITEMEDSAM_CACHE_DIR`` or
            ``~/.cache/litemedsam``).
    The predictor's ``mode`` attribute says which mode actually runs.
    """
    from ..predictor import DEFAULT_CACHE_SLICES, VolumePredictor
    from ..registry import load_model

    if model is None or isinstance(model, str):
        model = load_model(model)
    encoder, decoder, used = make_backend(model, mode, threads, folder)
    predictor = VolumePredictor(model, cache_slices or DEFAULT_CACHE_SLICES, encoder=encoder, decoder=decoder)
    predictor.mode = used
    return predictor
