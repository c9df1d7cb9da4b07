"""The laptop model family: every architecture of the manifest builds, has the papers' size,
loads its weights strictly through the registry, runs through the predictor and the 3D
propagation, and (RepViT) has a re-parameterized form with the same outputs.

Student weights are not shipped (Training/ produces them), so these tests use randomly
initialised networks: they check shapes, sizes and equivalences, not segmentation quality.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from LiteMedSAMLib import registry
from LiteMedSAMLib.errors import LiteMedSAMError
from LiteMedSAMLib.modeling import build_lite_medsam
from LiteMedSAMLib.modeling.input_channels import anisotropic_diffusion, equalize_histogram
from LiteMedSAMLib.modeling.lite_medsam import box_points
from LiteMedSAMLib.modeling.repvit import RepViT, is_fused
from LiteMedSAMLib.predictor import VolumePredictor
from LiteMedSAMLib.propagation import segment_volume

# Parameters of each model (training form), and the paper's figure where it gives one.
PARAMS = {
    "litemedsam": (9_791_300, 9.8e6),
    "swiftmedsam": (5_942_388, 5.9e6),
    "swiftmedsam-large": (6_996_636, None),
    "rep-medsam": (10_570_092, None),
    "repvit-m0.6": (6_595_788, None),
    "swin-litemedsam": (14_813_934, None),
    "efficientvit-sam-l0": (34_792_784, 34.8e6),
}
ENCODER_PARAMS = {"repvit-m0.6": (2_531_228, 2.3e6), "rep-medsam": (6_505_532, None)}
STUDENTS = [name for name in PARAMS if name != "litemedsam"]


def _spec(name):
    return registry.get_spec(name)


def _training_form(architecture: dict) -> dict:
    """The manifest architecture without inference-only transforms (fusion, int8)."""
    arch = json.loads(json.dumps(architecture))
    arch["encoder"].pop("reparameterized", None)
    arch.pop("quantization", None)
    return arch


def _n(module):
    return sum(p.numel() for p in module.parameters())


def test_every_student_is_registered_and_not_installed_says_how():
    rows = {row["name"]: row for row in registry.describe_models()}
    for name in STUDENTS:
        assert name in rows and rows[name]["weights"] is None
        assert "Training/" in rows[name]["install"]
        with pytest.raises(LiteMedSAMError, match="not installed.*Training/"):
            registry.load_model(name)


@pytest.mark.parametrize("name", list(PARAMS))
def test_parameter_counts_match_the_papers(name):
    model = build_lite_medsam(_training_form(_spec(name).architecture))
    exact, paper = PARAMS[name]
    assert _n(model) == exact
    if paper:
        assert abs(exact - paper) / paper < 0.03
    if name in ENCODER_PARAMS:
        exact, paper = ENCODER_PARAMS[name]
        assert _n(model.image_encoder) == exact
        if paper:
            assert abs(exact - paper) / paper < 0.12
    assert f"{exact / 1e6:.2f} M" in _spec(name).description


@pytest.fixture(scope="module")
def example_slice(example):
    from LiteMedSAMLib.preprocessing import intensity_mapping, prepare_slice

    image, _, _ = example
    return prepare_slice(intensity_mapping(image, "mr").apply(image[10]))


@pytest.mark.parametrize("name", STUDENTS)
def test_student_shapes_and_strict_registry_loading(name, example_slice, tmp_path, monkeypatch):
    """Inference form from the manifest: embedding (1, 256[+skips], 64, 64) and (1, 1, 256, 256)
    logits; its weights round-trip through a registry manifest with strict loading."""
    torch.manual_seed(0)
    spec = _spec(name)
    model = build_lite_medsam(spec.architecture).eval()
    emb = model.encode(example_slice)
    assert emb.shape[0] == 1 and emb.shape[1] >= 256 and emb.shape[2:] == (64, 64)
    logits, iou = model.decode(emb, boxes=torch.tensor([[40.0, 60.0, 140.0, 160.0]]))
    assert logits.shape == (1, 1, 256, 256) and iou.shape == (1, 1)
    assert torch.isfinite(logits).all()

    weights = tmp_path / spec.weights["filename"]
    torch.save(model.state_dict(), weights)
    entry = {"title": spec.title, "architecture": spec.architecture, "license": spec.license,
             "weights": {"filename": weights.name, "sha256": registry.file_sha256(weights)}}
    (tmp_path / "family.json").write_text(json.dumps({"models": {name: entry}}))
    monkeypatch.setenv(registry.MODELS_DIR_ENV, str(tmp_path))
    loaded = registry.load_model(name)
    for key, value in model.state_dict().items():
        if torch.is_tensor(value) and not value.is_quantized:
            assert torch.equal(loaded.state_dict()[key], value), key
    assert torch.equal(loaded.decode(emb, boxes=torch.tensor([[40.0, 60.0, 140.0, 160.0]]))[0], logits)
    # strict: the weights of another member of the family do not fit
    other = "swiftmedsam" if name != "swiftmedsam" else "swiftmedsam-large"
    torch.save(build_lite_medsam(_spec(other).architecture).state_dict(), weights)
    entry["weights"]["sha256"] = registry.file_sha256(weights)
    (tmp_path / "family.json").write_text(json.dumps({"models": {name: entry}}))
    with pytest.raises(LiteMedSAMError, match="does not fit the architecture"):
        registry.load_model(name)


def _train_batchnorm(model: torch.nn.Module, size: int) -> None:
    """A training step so that BatchNorm statistics and weights are not the identity."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(1):
        opt.zero_grad()
        model(torch.rand(2, 3, size, size)).square().mean().backward()
        opt.step()
    model.eval()


@pytest.mark.parametrize("name", ["repvit-m0.6", "rep-medsam"])
def test_repvit_reparameterization_gives_the_same_outputs(name):
    torch.manual_seed(0)
    cfg = dict(_training_form(_spec(name).architecture)["encoder"])
    cfg.pop("name")
    encoder = RepViT(**cfg)
    _train_batchnorm(encoder, 32)
    size = 256 if name == "repvit-m0.6" else 128  # equivalence does not depend on the size
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():
        before = encoder(x)
        encoder.fuse()
        after = encoder(x)
    assert is_fused(encoder)
    assert after.shape == (1, 256, size // 4, size // 4)
    assert torch.allclose(before, after, atol=1e-4, rtol=0), (before - after).abs().max()
    # the fused encoder is what a manifest with "reparameterized": true builds
    fused_model = build_lite_medsam(_spec(name).architecture)
    assert fused_model.image_encoder.state_dict().keys() == encoder.state_dict().keys()


def test_fuse_needs_eval_mode():
    with pytest.raises(RuntimeError, match="eval"):
        RepViT(embed_dims=(8, 16, 24, 32), depths=(1, 2, 2, 1)).train().fuse()


def test_swin_skips_and_box_points(example_slice):
    torch.manual_seed(0)
    model = build_lite_medsam(_spec("swin-litemedsam").architecture).eval()
    emb = model.encode(example_slice)
    assert emb.shape == (1, 256 + 64 + 4 * 32, 64, 64)
    box = torch.tensor([[40.0, 60.0, 140.0, 160.0]])
    pts = box_points(box[:, None])
    assert torch.equal(pts, torch.tensor([[[65.0, 85.0], [65.0, 135.0], [115.0, 85.0], [115.0, 135.0]]]))
    with_points, _ = model.decode(emb, boxes=box)
    model.box_points = 0
    without, _ = model.decode(emb, boxes=box)
    assert not torch.allclose(with_points, without)
    # the skip features reach the mask: changing them changes the logits
    model.box_points = 4
    changed = emb.clone()
    changed[:, 256:] += 1.0
    assert not torch.allclose(model.decode(changed, boxes=box)[0], with_points)
    # a scribble enters as a mask prompt
    scribble = torch.zeros(1, 1, 256, 256)
    scribble[..., 100:104, 60:120] = 1.0
    assert not torch.allclose(model.decode(emb, boxes=box, mask_input=scribble)[0], with_points)


def test_input_channels_raw_diffusion_histeq():
    rng = np.random.default_rng(0)
    img = (rng.random((64, 64)) * 120 + 40).astype(np.uint8)
    gray = torch.tensor(img / 255.0, dtype=torch.float32)[None, None]
    ours = (equalize_histogram(gray)[0, 0].numpy() * 255).round().astype(np.uint8)
    assert np.abs(ours.astype(int) - cv2.equalizeHist(img).astype(int)).max() <= 1
    diffused = anisotropic_diffusion(gray)
    assert diffused.shape == gray.shape and diffused.std() < gray.std()
    assert torch.isclose(diffused.mean(), gray.mean(), atol=1e-3)  # diffusion conserves mass
    model = build_lite_medsam(_training_form(_spec("efficientvit-sam-l0").architecture))
    three = model.input_transform(gray.repeat(1, 3, 1, 1))
    assert three.shape == (1, 3, 64, 64) and torch.equal(three[:, :1], gray)


def test_int8_model_stays_close_to_float(example_slice):
    """Dynamic int8 (as EfficientViT-SAM-L0 ships) on the cheaper SwiftMedSAM network."""
    torch.manual_seed(0)
    arch = dict(_spec("swiftmedsam").architecture, quantization="dynamic_int8")
    float_model = build_lite_medsam(_training_form(arch)).eval()
    int8 = build_lite_medsam(arch)
    int8.load_state_dict(_quantized_state(float_model, arch))
    box = torch.tensor([[40.0, 60.0, 140.0, 160.0]])
    emb = float_model.encode(example_slice)
    ref, _ = float_model.decode(emb, boxes=box)
    quant, _ = int8.decode(int8.encode(example_slice), boxes=box)
    assert "Quantized" in type(int8.mask_decoder.transformer.layers[0].self_attn.q_proj).__module__.title()
    corr = np.corrcoef(ref.flatten().numpy(), quant.flatten().numpy())[0, 1]
    assert corr > 0.95  # random weights; int8 error is a few percent of the logits


def _quantized_state(float_model, architecture):
    from LiteMedSAMLib.modeling.lite_medsam import quantize

    return quantize(float_model, architecture["quantization"]).state_dict()


def test_students_run_through_predictor_and_propagation(example):
    """A student with packed skip features and box points segments a 3D box end to end."""
    image, _, _ = example
    torch.manual_seed(0)
    model = build_lite_medsam(_spec("swin-litemedsam").architecture).eval()
    predictor = VolumePredictor(model)
    predictor.set_volume(image[:3], preset="mr")
    (mask,) = segment_volume(predictor, [(14, 79, 1, 62, 130, 2)], pipeline="official")
    assert mask.shape == image[:3].shape and mask.dtype == np.uint8
    assert predictor.encoder_runs == 2  # two slices, each encoded once
    fresh = VolumePredictor(model)
    fresh.set_volume(image[:3], preset="mr")
    (default,) = segment_volume(fresh, [(14, 79, 1, 62, 130, 2)])
    assert default.shape == mask.shape and default.dtype == np.uint8
    # the default encodes the start slice in both frames to choose the object's window
    assert fresh.encoder_runs == 3
