"""Backends (LiteMedSAMLib.backends): the exact mode gives the eager masks, the fast mode stays
close, converted models are cached and reused, and a missing backend falls back to eager."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from LiteMedSAMLib import backends
from LiteMedSAMLib.boxes import Box3D
from LiteMedSAMLib.evaluation.metrics import dice
from LiteMedSAMLib.predictor import VolumePredictor
from LiteMedSAMLib.propagation import segment_volume

LOBE = Box3D(14, 79, 9, 62, 130, 13)  # left temporal lobe of the example, 5 slices
SLICE_BOXES = [(10, (14, 79, 62, 130)), (16, (22, 10, 134, 91))]  # real slices, real boxes

needs_openvino = pytest.mark.skipif(not backends.openvino_available(), reason="OpenVINO not installed")


@pytest.fixture(scope="module")
def cache_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("converted")


@pytest.fixture(scope="module")
def eager(model, example):
    p = VolumePredictor(model)
    p.set_volume(example[0], preset="mr")
    return p


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def first_conversion(model, cache_folder):
    """The exact backend converted into an empty cache, with what it logged and warned."""
    import warnings

    from LiteMedSAMLib.backends import openvino_backend

    openvino_backend._announced = False  # as in a new process
    handler = _Records()
    logger = logging.getLogger("LiteMedSAMLib")
    logger.addHandler(handler)
    previous, logger.level = logger.level, logging.DEBUG
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            predictor = backends.make_predictor(model, "exact", threads=2, folder=cache_folder)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
    return predictor, handler.records, caught


@pytest.fixture(scope="module")
def exact(first_conversion, example):
    p = first_conversion[0]
    p.set_volume(example[0], preset="mr")
    return p


@needs_openvino
def test_the_first_conversion_says_so_once_and_quietly(first_conversion):
    """One notice at the CLI's default verbosity (INFO) for encoder and decoders together,
    and none of torch's TracerWarnings."""
    predictor, records, caught = first_conversion
    assert predictor.mode == "exact"
    notices = [r.getMessage() for r in records if r.levelno >= logging.INFO]
    assert len(notices) == 1 and notices[0].startswith("converting the model for this CPU with OpenVINO, once")
    assert sum("converted the" in r.getMessage() for r in records if r.levelno == logging.DEBUG) == 3
    assert not [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)]


@needs_openvino
def test_exact_mode_gives_the_eager_embeddings_and_masks(exact, eager):
    assert exact.mode == "exact"
    for z, box in SLICE_BOXES:
        torch.testing.assert_close(exact.embedding(z), eager.embedding(z), atol=1e-4, rtol=0)
        a, b = exact.predict_slice(z, box), eager.predict_slice(z, box)
        torch.testing.assert_close(a.low_res_logits, b.low_res_logits, atol=1e-3, rtol=0)
        np.testing.assert_array_equal(a.mask, b.mask)


@needs_openvino
def test_exact_mode_3d_sweep_equals_eager(exact, eager):
    (fast_mask,) = segment_volume(exact, [LOBE], pipeline="official")
    (eager_mask,) = segment_volume(eager, [LOBE], pipeline="official")
    np.testing.assert_array_equal(fast_mask, eager_mask)


@needs_openvino
def test_point_and_mask_prompts_match_the_eager_decoder(exact, eager):
    """The OpenVINO prompt decoder (box + points [+ mask prompt], single and multimask outputs)
    gives the eager model's logits; prompts it does not cover fall back to eager."""
    z, box = SLICE_BOXES[0]
    first = eager.predict_slice(z, box)
    from LiteMedSAMLib.preprocessing import box_to_model, points_to_model

    hw = exact.shape[1:]
    b = box_to_model(box, hw)
    for points, labels in ((np.array([[40, 100]]), np.array([0])),
                           (np.array([[40, 100], [60, 110], [70, 90]]), np.array([1, 0, 1]))):
        p = points_to_model(points, hw)
        for mask_input in (None, first.low_res_logits):
            ours = exact.predict_model_box(z, b, p, labels, mask_input)
            theirs = eager.predict_model_box(z, b, p, labels, mask_input)
            np.testing.assert_allclose(ours.low_res_logits.numpy(), theirs.low_res_logits.numpy(), atol=1e-3)
            np.testing.assert_array_equal(ours.mask, theirs.mask)
            for a, e in zip(exact.predict_multimask(z, b, p, labels, mask_input),
                            eager.predict_multimask(z, b, p, labels, mask_input)):
                assert np.count_nonzero(a.mask != e.mask) <= 2
                assert abs(a.iou - e.iou) < 1e-3
    assert exact.decoder.prompt_request is not None
    # A box and a mask prompt without points (as the carry prompts a slice): converted too,
    # with an empty point array, and the eager model's masks
    for multimask in (False, True):
        decode = exact.predict_multimask if multimask else exact.predict_model_box
        eager_decode = eager.predict_multimask if multimask else eager.predict_model_box
        ours = decode(z, b, None, None, first.low_res_logits)
        theirs = eager_decode(z, b, None, None, first.low_res_logits)
        for a, e in zip(ours if multimask else [ours], theirs if multimask else [theirs]):
            np.testing.assert_allclose(a.low_res_logits.numpy(), e.low_res_logits.numpy(), atol=1e-3)
            assert np.count_nonzero(a.mask != e.mask) <= 2
    # No box: the eager model.
    pts = points_to_model(np.array([[40, 100]]), hw)
    np.testing.assert_array_equal(exact.predict_model_box(z, None, pts, np.array([1])).mask,
                                  eager.predict_model_box(z, None, pts, np.array([1])).mask)


def test_the_decoders_are_converted_from_the_same_function_channels_first(model, eager):
    """The copy the decoders are converted from keeps the two-way transformer's image stream
    channels-first: on a real slice, box alone and box + points + mask prompt (all four
    outputs), it gives the eager model's logits to float rounding and the same masks; the eager
    model itself keeps SAM's layout (the official parity is bit for bit)."""
    from LiteMedSAMLib.backends.openvino_backend import _channels_first
    from LiteMedSAMLib.modeling.transformer import TwoWayTransformer
    from LiteMedSAMLib.preprocessing import box_to_model, points_to_model

    copy = _channels_first(model)
    assert all(m.channels_first for m in copy.modules() if isinstance(m, TwoWayTransformer))
    assert not any(m.channels_first for m in model.modules() if isinstance(m, TwoWayTransformer))
    z, box = SLICE_BOXES[0]
    emb, hw = eager.embedding(z), eager.shape[1:]
    boxes = torch.as_tensor(box_to_model(box, hw), dtype=torch.float)[None]
    coords = torch.as_tensor(points_to_model(np.array([[40, 100], [60, 110]]), hw), dtype=torch.float)[None]
    points = (coords, torch.tensor([[0, 1]]))
    first, _ = model.decode(emb, boxes=boxes)
    for prompts in ({}, {"points": points, "mask_input": first, "multimask_output": True}):
        theirs, their_iou = model.decode(emb, boxes=boxes, **prompts)
        ours, our_iou = copy.decode(emb, boxes=boxes, **prompts)
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)
        torch.testing.assert_close(our_iou, their_iou, atol=1e-5, rtol=0)
        assert torch.equal(ours > 0, theirs > 0)


@needs_openvino
def test_fast_mode_stays_close_to_eager_on_real_slices(model, example, eager, cache_folder):
    fast = backends.make_predictor(model, "fast", threads=2, folder=cache_folder)
    fast.set_volume(example[0], preset="mr")
    assert fast.mode == "fast"
    for z, box in SLICE_BOXES:
        assert dice(fast.predict_slice(z, box).mask, eager.predict_slice(z, box).mask) >= 0.98


@needs_openvino
def test_converted_model_is_cached_and_reused(model, exact, cache_folder):
    from LiteMedSAMLib.backends.openvino_backend import OpenVINOEncoder

    path = exact.encoder.path
    assert path.parent == cache_folder and path.is_file() and path.with_suffix(".bin").is_file()
    assert "79d8c9dca6db4d69" in path.name  # keyed by the weights' SHA-256
    mtime = path.stat().st_mtime_ns
    again = OpenVINOEncoder(model, "f32", threads=2, folder=cache_folder)
    assert not again.converted and again.path == path and path.stat().st_mtime_ns == mtime


def test_missing_backend_falls_back_to_eager(model, monkeypatch, caplog, tmp_path):
    monkeypatch.setattr(backends, "openvino_available", lambda: False)
    with caplog.at_level(logging.WARNING):
        p = backends.make_predictor(model, "exact", folder=tmp_path)
    assert p.mode == "torch" and p.encoder == model.encode
    assert "needs OpenVINO" in caplog.text


@needs_openvino
def test_failed_conversion_falls_back_to_eager(model, monkeypatch, caplog, tmp_path):
    from LiteMedSAMLib.backends import openvino_backend

    def broken(*args, **kwargs):
        raise RuntimeError("no CPU plug-in")

    monkeypatch.setattr(openvino_backend, "_converted", broken)
    with caplog.at_level(logging.WARNING):
        p = backends.make_predictor(model, "fast", folder=tmp_path)
    assert p.mode == "torch" and "no CPU plug-in" in caplog.text
    assert not list(tmp_path.iterdir())


def test_unknown_mode_is_a_clear_error(model):
    from LiteMedSAMLib.errors import LiteMedSAMError

    with pytest.raises(LiteMedSAMError, match="unknown mode"):
        backends.make_predictor(model, "turbo")
