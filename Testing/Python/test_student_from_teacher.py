"""The pieces of Training/student_from_teacher.py (SwiftMedSAM started from LiteMedSAM's own
blocks, issue #12): the student is the teacher where it keeps blocks, the decoder's 8 -> 4 head
merge is exact for adjacent pairs, the image pool is model-ready and never reads the test split,
and an export is a manifest the registry loads strictly.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from LiteMedSAMLib.modeling import build_lite_medsam
from LiteMedSAMLib.modeling.transformer import Attention

NAME = "swiftmedsam"


def test_merging_heads_by_pairs_keeps_identity_pairs_and_is_order_free_inside_a_pair():
    """The decoder's 8 -> 4 heads merge: adjacent pairs leave the weights as they are, and the
    order inside a pair does not change the attention (q and k permute alike)."""
    from Training.student_from_teacher import _pair_heads, _pairings

    assert len(list(_pairings(list(range(8))))) == 105
    torch.manual_seed(0)
    eight = Attention(256, 8, 2)
    same, swapped = Attention(256, 4, 2), Attention(256, 4, 2)
    same.load_state_dict(eight.state_dict())
    swapped.load_state_dict(eight.state_dict())
    _pair_heads(same, [(0, 1), (2, 3), (4, 5), (6, 7)], 8)
    assert all(torch.equal(v, eight.state_dict()[k]) for k, v in same.state_dict().items())
    _pair_heads(swapped, [(1, 0), (3, 2), (5, 4), (7, 6)], 8)
    q, k = torch.rand(1, 5, 256), torch.rand(1, 40, 256)
    assert torch.allclose(same(q, k, k), swapped(q, k, k), atol=1e-5)
    _pair_heads(swapped, [(0, 2), (1, 3), (4, 6), (5, 7)], 8)
    assert not torch.allclose(same(q, k, k), swapped(q, k, k), atol=1e-3)


def test_assembled_student_is_the_teacher_where_it_keeps_blocks(model):
    """Started from the teacher: with the kept blocks copied, each shared module is bit-equal."""
    from Training.student_from_teacher import assemble_encoder, student_architecture

    student = build_lite_medsam(student_architecture(NAME)).eval()
    assemble_encoder(student, model, {"0": [1], "2": [0, 5]})
    s, t = student.image_encoder, model.image_encoder
    assert torch.equal(s.layers[0].blocks[0].conv1.c.weight, t.layers[0].blocks[1].conv1.c.weight)
    assert torch.equal(s.layers[2].blocks[1].mlp.fc1.weight, t.layers[2].blocks[5].mlp.fc1.weight)
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():  # stages 1 and 3 are the teacher's
        assert torch.equal(s.layers[1](t.layers[0](t.patch_embed(x))), t.layers[1](t.layers[0](t.patch_embed(x))))
    with pytest.raises(ValueError, match="stage 2"):
        assemble_encoder(student, model, {"0": [1], "2": [0, 1, 2]})


def test_image_pool_is_model_ready_and_never_reads_the_test_split(tmp_path):
    """Pool entries have the inference size (longest side 256) and labels that follow the
    augmentation; a suite index with only test cases gives no training image."""
    import SimpleITK as sitk

    from Training.image_pool import augment, build_pool

    rng = np.random.default_rng(0)
    img = np.arange(60 * 80, dtype=np.uint8).reshape(60, 80)
    gt = np.zeros((60, 80), np.uint16)
    gt[10:20, 30:50] = 3
    a, g = augment(img, gt, rng)
    assert a.shape == g.shape and set(np.unique(g)) <= {0, 3}
    volume = np.random.default_rng(1).normal(100, 20, (48, 64, 64)).astype(np.float32)
    label = np.zeros(volume.shape, np.uint8)
    label[20:30, 20:40, 20:40] = 1
    for split in ("train", "test"):
        folder = tmp_path / split
        folder.mkdir()
        sitk.WriteImage(sitk.GetImageFromArray(volume), str(folder / "image.nii.gz"))
        sitk.WriteImage(sitk.GetImageFromArray(label), str(folder / "label.nii.gz"))
    cases = {s: {"id": s, "split": s, "dimension": 3, "modality": "MR", "image": f"{s}/image.nii.gz",
                 "label": f"{s}/label.nii.gz"} for s in ("train", "test")}
    (tmp_path / "index.json").write_text(json.dumps({"cases": cases}))
    files = build_pool(tmp_path / "index.json", tmp_path / "pool", per_axis=3)
    assert files and all(f.name.startswith("train_") for f in files)
    for f in files:
        with np.load(f) as d:
            assert max(d["img"].shape) == 256 and d["img"].shape == d["gt"].shape and d["img"].dtype == np.uint8


def test_export_writes_a_manifest_the_registry_loads_strictly(tmp_path, monkeypatch):
    """Encoder and decoder stages saved apart are joined; float16 is kept only if no mask of
    the measuring pool changes; the registry then loads the student from LITEMEDSAM_MODELS_DIR."""
    from LiteMedSAMLib import registry
    from Training.student_from_teacher import export, student_architecture

    torch.manual_seed(0)
    arch = student_architecture(NAME)
    encoder_state = build_lite_medsam(arch).state_dict()
    decoder_state = build_lite_medsam(arch).state_dict()
    for stage, state in (("encoder", encoder_state), ("decoder", decoder_state)):
        (tmp_path / stage).mkdir()
        torch.save(state, tmp_path / stage / "student.pth")
    (tmp_path / "val").mkdir()
    img = (np.random.default_rng(0).random((200, 256)) * 255).astype(np.uint8)
    gt = np.zeros(img.shape, np.uint16)
    gt[50:120, 60:150] = 1
    np.savez_compressed(tmp_path / "val" / "a.npz", img=img, gt=gt)
    manifest = export(tmp_path, tmp_path / "export", NAME)
    from manifest_schema import manifest_errors

    data = json.loads(manifest.read_text())
    assert manifest_errors(data) == []
    entry = data["models"][NAME]
    check = entry["training"]["float16_check"]
    assert check["pixels_compared"] == 256 * 256 and check["float16"] == (check["mask_pixels_changed"] == 0)
    monkeypatch.setenv(registry.MODELS_DIR_ENV, str(tmp_path / "export"))
    loaded = registry.load_model(NAME)
    assert registry.file_sha256(tmp_path / "export" / f"{NAME}.pth") == entry["weights"]["sha256"]
    for key, value in loaded.state_dict().items():  # encoder from one stage, decoder from the other
        source = decoder_state if key.startswith("mask_decoder.") else encoder_state
        if value.is_floating_point():
            assert torch.allclose(value, source[key].float(), atol=1e-2, rtol=1e-3), key
