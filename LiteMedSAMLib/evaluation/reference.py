"""A literal re-implementation of the official ``CVPR24_LiteMedSAM_infer.py`` 3D inference.

This is the yardstick, not a product path: eager PyTorch, no embedding cache, and the
official semantics in full (challenge box format ``(x_min, y_min, z_min, x_max, y_max,
z_max)`` with the end slices excluded, the neighbour mask resized with its label value,
later boxes overwriting earlier ones in one label map). Tests use it to prove that the
library's optimised paths give the official masks, and the benchmark times it.

It depends only on numpy, OpenCV and torch, and on the ``image_encoder``,
``prompt_encoder`` and ``mask_decoder`` attributes of the model, so it runs the official
vendored model as well as ours. It deliberately does not reuse the library's helpers.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F


def _resize_longest_side(image: np.ndarray, target_length: int = 256) -> np.ndarray:
    oldh, oldw = image.shape[0], image.shape[1]
    scale = target_length * 1.0 / max(oldh, oldw)
    newh, neww = oldh * scale, oldw * scale
    neww, newh = int(neww + 0.5), int(newh + 0.5)
    return cv2.resize(image, (neww, newh), interpolation=cv2.INTER_AREA)


def _pad_image(image: np.ndarray, target_size: int = 256) -> np.ndarray:
    h, w = image.shape[0], image.shape[1]
    padh, padw = target_size - h, target_size - w
    if len(image.shape) == 3:
        return np.pad(image, ((0, padh), (0, padw), (0, 0)))
    return np.pad(image, ((0, padh), (0, padw)))


def _get_bbox256(mask_256: np.ndarray, bbox_shift: int = 3) -> np.ndarray:
    y_indices, x_indices = np.where(mask_256 > 0)
    x_min, x_max = np.min(x_indices), np.max(x_indices)
    y_min, y_max = np.min(y_indices), np.max(y_indices)
    h, w = mask_256.shape
    x_min = max(0, x_min - bbox_shift)
    x_max = min(w, x_max + bbox_shift)
    y_min = max(0, y_min - bbox_shift)
    y_max = min(h, y_max + bbox_shift)
    return np.array([x_min, y_min, x_max, y_max])


def _resize_box_to_256(box: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
    new_box = np.zeros_like(box)
    ratio = 256 / max(original_size)
    for i in range(len(box)):
        new_box[i] = int(box[i] * ratio)
    return new_box


@torch.no_grad()
def _medsam_inference(model, img_embed, box_256, new_size, original_size) -> np.ndarray:
    box_torch = torch.as_tensor(box_256[None, None, ...], dtype=torch.float, device=img_embed.device)
    sparse, dense = model.prompt_encoder(points=None, boxes=box_torch, masks=None)
    low_res_logits, _ = model.mask_decoder(
        image_embeddings=img_embed, image_pe=model.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=False)
    low_res_logits = low_res_logits[..., :new_size[0], :new_size[1]]
    low_res_pred = F.interpolate(low_res_logits, size=(original_size[0], original_size[1]),
                                 mode="bilinear", align_corners=False)
    low_res_pred = torch.sigmoid(low_res_pred).squeeze().cpu().numpy()
    return (low_res_pred > 0.5).astype(np.uint8)


@torch.no_grad()
def _embed_slice(model, img_2d: np.ndarray, device) -> tuple[torch.Tensor, int, int]:
    img_3c = np.repeat(img_2d[:, :, None], 3, axis=-1) if len(img_2d.shape) == 2 else img_2d
    img_256 = _resize_longest_side(img_3c, 256)
    new_h, new_w = img_256.shape[:2]
    img_256 = (img_256 - img_256.min()) / np.clip(img_256.max() - img_256.min(), a_min=1e-8, a_max=None)
    img_256 = _pad_image(img_256)
    tensor = torch.tensor(img_256).float().permute(2, 0, 1).unsqueeze(0).to(device)
    return model.image_encoder(tensor), new_h, new_w


def official_infer_3d(model, img_3d: np.ndarray, boxes_3d: np.ndarray,
                      device: str | torch.device = "cpu") -> np.ndarray:
    """``MedSAM_infer_npz_3D`` on an in-memory case; returns the ``segs`` label map.

    Args:
        model: has ``image_encoder``, ``prompt_encoder`` and ``mask_decoder``.
        img_3d: uint8 ``(D, H, W)`` preprocessed volume (the challenge's ``imgs``).
        boxes_3d: ``(N, 6)`` challenge boxes ``(x_min, y_min, z_min, x_max, y_max, z_max)``.
    """
    segs = np.zeros_like(img_3d, dtype=np.uint8)
    for idx, box3d in enumerate(boxes_3d, start=1):
        segs_3d_temp = np.zeros_like(img_3d, dtype=np.uint8)
        x_min, y_min, z_min, x_max, y_max, z_max = box3d
        assert z_min < z_max, f"z_min should be smaller than z_max, but got {z_min=} and {z_max=}"
        mid_slice_bbox_2d = np.array([x_min, y_min, x_max, y_max])
        z_middle = int((z_max - z_min) / 2 + z_min)
        for z in range(z_middle, z_max):
            embedding, new_h, new_w = _embed_slice(model, img_3d[z, :, :], device)
            h, w = img_3d.shape[1:3]
            if z == z_middle:
                box_256 = _resize_box_to_256(mid_slice_bbox_2d, original_size=(h, w))
            else:
                pre_seg256 = _resize_longest_side(segs_3d_temp[z - 1, :, :])
                if np.max(pre_seg256) > 0:
                    box_256 = _get_bbox256(_pad_image(pre_seg256))
                else:
                    box_256 = _resize_box_to_256(mid_slice_bbox_2d, original_size=(h, w))
            seg = _medsam_inference(model, embedding, box_256, [new_h, new_w], [h, w])
            segs_3d_temp[z, seg > 0] = idx
        for z in range(z_middle - 1, z_min, -1):
            embedding, new_h, new_w = _embed_slice(model, img_3d[z, :, :], device)
            h, w = img_3d.shape[1:3]
            pre_seg256 = _resize_longest_side(segs_3d_temp[z + 1, :, :])
            if np.max(pre_seg256) > 0:
                box_256 = _get_bbox256(_pad_image(pre_seg256))
            else:
                box_256 = _resize_box_to_256(mid_slice_bbox_2d, original_size=(h, w))
            seg = _medsam_inference(model, embedding, box_256, [new_h, new_w], [h, w])
            segs_3d_temp[z, seg > 0] = idx
        segs[segs_3d_temp > 0] = idx
    return segs


def official_preprocess_ct(image_data: np.ndarray, width: float = 400, level: float = 40) -> np.ndarray:
    """``pre_CT_MR.py``'s CT branch, on the whole volume at once."""
    lower_bound, upper_bound = level - width / 2, level + width / 2
    pre = np.clip(image_data, lower_bound, upper_bound)
    pre = (pre - np.min(pre)) / (np.max(pre) - np.min(pre)) * 255.0
    return np.uint8(pre)


def official_preprocess_mr(image_data: np.ndarray) -> np.ndarray:
    """``pre_CT_MR.py``'s MR branch, on the whole volume at once."""
    lower_bound = np.percentile(image_data[image_data > 0], 0.5)
    upper_bound = np.percentile(image_data[image_data > 0], 99.5)
    pre = np.clip(image_data, lower_bound, upper_bound)
    pre = (pre - np.min(pre)) / (np.max(pre) - np.min(pre)) * 255.0
    pre[image_data == 0] = 0
    return np.uint8(pre)
