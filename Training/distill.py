"""Stage 1, encoder distillation: the student's image encoder regresses the teacher's embeddings.

As Rep-MedSAM, SwiftMedSAM and the official LiteMedSAM distillation (TinyViT from MedSAM's
ViT-B): the teacher's ``(256, 64, 64)`` embedding of every prepared slice is computed once and
stored (float16, ``<output>/teacher_embeddings/``), then the student encoder is trained with
the mean squared error to it. The slice goes through the inference preprocessing, without
augmentation, so stored embeddings match the student's input exactly. Only the first 256
channels of an encoder with skip features (Swin-LiteMedSAM) are distilled.

    python -m Training.distill --config Training/configs/rep_medsam.json --data data/slices
    torchrun --nproc_per_node 4 -m Training.distill --config ... --data ...   # several GPUs
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from LiteMedSAMLib.modeling import build_lite_medsam

from .common import Runtime, run_stage, seed_everything, stage_parser, training_architecture
from .data import list_slices, load_slice, model_input
from .loop import train

EMBED = 256


def precompute_teacher(rt: Runtime, teacher_name: str, slices: list[Path], cache: Path,
                       batch_size: int = 8) -> None:
    """Store the teacher embedding of every slice not yet in ``cache`` (each rank its share)."""
    from LiteMedSAMLib.registry import load_model

    cache.mkdir(parents=True, exist_ok=True)
    todo = [p for p in slices[rt.rank::rt.world_size] if not (cache / f"{p.stem}.pt").exists()]
    if todo:
        teacher = load_model(teacher_name, device=str(rt.device))
        for i in range(0, len(todo), batch_size):
            chunk = todo[i:i + batch_size]
            x = torch.stack([model_input(load_slice(p)[0]) for p in chunk]).to(rt.device)
            emb = teacher.encode(x)[:, :EMBED].half().cpu()
            for p, e in zip(chunk, emb):
                torch.save(e.clone(), cache / f"{p.stem}.pt")
            if rt.is_main:
                print(f"teacher embeddings: {min(i + batch_size, len(todo))}/{len(todo)} (rank 0)", flush=True)
    if rt.distributed:
        torch.distributed.barrier()


class EmbeddingDataset(Dataset):
    def __init__(self, slices: list[Path], cache: Path) -> None:
        self.slices, self.cache = slices, cache

    def __len__(self) -> int:
        return len(self.slices)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        p = self.slices[i]
        target = torch.load(self.cache / f"{p.stem}.pt", weights_only=True).float()
        return {"image": model_input(load_slice(p)[0]), "target": target}


class StudentEncoder(nn.Module):
    """The student's input transform + image encoder (the part stage 1 trains)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.input_transform, self.image_encoder = model.input_transform, model.image_encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(self.input_transform(x))


def distill_step(module: nn.Module, batch: dict[str, torch.Tensor]):
    pred = module(batch["image"])[:, :EMBED]
    loss = F.mse_loss(pred, batch["target"])
    return loss, {"loss": loss.item()}


def run_distill(cfg: dict, data: str | Path, rt: Runtime, resume: bool = False) -> Path:
    """Stage 1; returns the path of the distilled student (full model state, training form)."""
    seed_everything(cfg["seed"])
    settings = cfg.get("distill", {})
    out = Path(cfg["output"])
    slices = list_slices(data)
    precompute_teacher(rt, cfg["teacher"], slices, out / "teacher_embeddings",
                       int(settings.get("teacher_batch_size", 8)))
    model = build_lite_medsam(training_architecture(cfg["architecture"]))
    student = StudentEncoder(model)
    train(rt, student, EmbeddingDataset(slices, out / "teacher_embeddings"), distill_step,
          settings, out / "distill", [], f"{cfg['model']} distillation", resume=resume)
    result = out / "distill" / "student.pth"
    if rt.is_main:
        torch.save(model.state_dict(), result)
        print(f"distilled student: {result}")
    return result


def main(argv: list[str] | None = None) -> int:
    p = stage_parser("python -m Training.distill", __doc__, "continue from <output>/distill/last.pth")
    args = p.parse_args(argv)
    return run_stage(args, lambda cfg, rt: run_distill(cfg, args.data, rt, args.resume))


if __name__ == "__main__":
    sys.exit(main())
