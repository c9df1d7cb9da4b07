"""Stage 2, end-to-end fine-tuning: encoder + prompt encoder + mask decoder on box prompts.

As the official LiteMedSAM ``train_one_gpu.py``: loss = Dice + binary cross-entropy on the
low-resolution (256x256) mask logits + ``iou_loss_weight`` x MSE between the predicted IoU and
the actual IoU of the thresholded mask. The prompt encoder and decoder start from the teacher's
where the shapes agree (SAM decoder students), the encoder from stage 1. Boxes are jittered,
images flipped (see :class:`~Training.data.SliceDataset`). Models with ``prompts.box_points``
(Swin-LiteMedSAM) get their box-derived points inside the model; with ``scribble_prob`` a batch
also gets random scribbles as mask prompts.

    python -m Training.finetune --config Training/configs/rep_medsam.json --data data/slices
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from LiteMedSAMLib.modeling import build_lite_medsam

from .common import Runtime, run_stage, seed_everything, stage_parser, training_architecture
from .data import SliceDataset
from .loop import train


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Soft Dice on sigmoid probabilities, per sample, averaged (MONAI ``DiceLoss(sigmoid=True)``)."""
    prob = torch.sigmoid(logits).flatten(1)
    target = target.flatten(1)
    inter = (prob * target).sum(1)
    return (1 - (2 * inter + eps) / (prob.sum(1) + target.sum(1) + eps)).mean()


def actual_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    pred = (logits > 0).flatten(1).float()
    target = target.flatten(1)
    inter = (pred * target).sum(1)
    union = pred.sum(1) + target.sum(1) - inter
    return inter / union.clamp(min=1)


class Segmenter(nn.Module):
    """The whole model as one module for DDP: image + boxes (+ mask prompt) -> logits, IoU."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image, boxes, mask_input=None):
        emb = self.model.forward_encoder(image)
        return self.model.forward_decoder(emb, boxes=boxes, mask_input=mask_input)


def make_step(iou_weight: float, scribble_prob: float):
    def step(module: nn.Module, batch: dict[str, torch.Tensor]):
        mask_input = batch["scribble"] if "scribble" in batch and random.random() < scribble_prob else None
        logits, iou_pred = module(batch["image"], batch["box"], mask_input)
        target = batch["mask"]
        dice = dice_loss(logits, target)
        bce = F.binary_cross_entropy_with_logits(logits, target)
        iou = F.mse_loss(iou_pred.squeeze(1), actual_iou(logits.detach(), target))
        loss = dice + bce + iou_weight * iou
        return loss, {"loss": loss.item(), "dice": dice.item(), "bce": bce.item(), "iou": iou.item()}
    return step


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, dataset, batches: int, batch_size: int,
                          device: torch.device) -> int:
    """Re-estimate BatchNorm running statistics as exact averages over ``batches`` batches
    ("precise BN"). After a short run the running averages lag far behind the weights, and the
    inference (eval-mode) output differs from what training saw; returns the layers updated."""
    from torch.utils.data import DataLoader

    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average
    model.train()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True)
    for i, batch in enumerate(loader):
        if i >= batches:
            break
        model.forward_encoder(batch["image"].to(device))
    for bn in norms:
        bn.momentum = 0.1
    model.eval()
    return len(norms)


def init_from_teacher(model: nn.Module, teacher_name: str) -> int:
    """Copy the teacher's prompt encoder and decoder tensors whose names and shapes match."""
    from LiteMedSAMLib.registry import load_model

    teacher = load_model(teacher_name).state_dict()
    own = model.state_dict()
    copied = {k: v for k, v in teacher.items()
              if not k.startswith("image_encoder.") and k in own and own[k].shape == v.shape}
    model.load_state_dict(copied, strict=False)
    return len(copied)


def run_finetune(cfg: dict, data: str | Path, rt: Runtime, init: str | Path | None = None,
                 resume: bool = False) -> Path:
    """Stage 2; returns the path of the fine-tuned model (training form state dict)."""
    seed_everything(cfg["seed"])
    settings = cfg.get("finetune", {})
    out = Path(cfg["output"])
    model = build_lite_medsam(training_architecture(cfg["architecture"]))
    if settings.get("init_decoder_from_teacher", True):
        n = init_from_teacher(model, cfg["teacher"])
        if rt.is_main:
            print(f"prompt encoder / decoder: {n} tensors from the teacher {cfg['teacher']!r}")
    init = Path(init) if init else out / "distill" / "student.pth"
    if settings.get("init_encoder_from_teacher"):  # fine-tune the teacher itself (same architecture)
        from LiteMedSAMLib.registry import load_model

        model.load_state_dict(load_model(cfg["teacher"]).state_dict(), strict=True)
        if rt.is_main:
            print(f"whole model from the teacher {cfg['teacher']!r}")
    elif init.exists():
        state = torch.load(init, map_location="cpu", weights_only=True)
        encoder = {k: v for k, v in state.items() if k.startswith("image_encoder.")}
        model.load_state_dict(encoder, strict=False)
        if rt.is_main:
            print(f"encoder: {len(encoder)} tensors from {init}")
    elif rt.is_main:
        print(f"no distilled encoder at {init}: the encoder starts from scratch")
    scribble_prob = float(settings.get("scribble_prob", 0.0))
    dataset = SliceDataset(data, bbox_shift=int(settings.get("bbox_shift", 5)),
                           augment=bool(settings.get("augment", True)), scribble_prob=scribble_prob,
                           seed=cfg["seed"])
    train(rt, Segmenter(model), dataset, make_step(float(settings.get("iou_loss_weight", 1.0)), scribble_prob),
          settings, out / "finetune", ["dice", "bce", "iou"], f"{cfg['model']} fine-tuning", resume=resume)
    result = out / "finetune" / "model.pth"
    if rt.is_main:
        if settings.get("recalibrate_bn_batches"):
            recalibrate_batchnorm(model, dataset, int(settings["recalibrate_bn_batches"]),
                                  int(settings.get("batch_size", 8)), rt.device)
        torch.save(model.state_dict(), result)
        print(f"fine-tuned model: {result}")
    return result


def main(argv: list[str] | None = None) -> int:
    p = stage_parser("python -m Training.finetune", __doc__, "continue from <output>/finetune/last.pth")
    p.add_argument("--init", help="student to start from (default <output>/distill/student.pth)")
    args = p.parse_args(argv)
    return run_stage(args, lambda cfg, rt: run_finetune(cfg, args.data, rt, args.init, args.resume))


if __name__ == "__main__":
    sys.exit(main())
