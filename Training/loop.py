"""The training loop both stages share: data loading (DistributedSampler under torchrun),
AdamW with a cosine schedule, a per-step loss log, checkpoints every N steps and at the end,
and resume from the last checkpoint."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .common import LossLog, Runtime, load_checkpoint, save_checkpoint

StepFn = Callable[[torch.nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, float]]]


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def train(rt: Runtime, module: torch.nn.Module, dataset: Dataset, step_fn: StepFn,
          settings: dict[str, Any], out_dir: Path, loss_terms: list[str], title: str,
          resume: bool = False) -> LossLog:
    """Train ``module`` (its trainable parameters) for ``settings['epochs']`` epochs, or
    ``settings['max_steps']`` steps if given.

    ``step_fn(module, batch)`` returns the loss to minimise and the values to log (``loss``
    and each of ``loss_terms``). Checkpoints go to ``out_dir/last.pth``; with ``resume`` the
    run continues from there (same optimizer state, schedule and step count).
    """
    module.to(rt.device)
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=float(settings.get("lr", 1e-4)),
                                  weight_decay=float(settings.get("weight_decay", 0.01)))
    batch_size = int(settings.get("batch_size", 8))
    sampler = DistributedSampler(dataset, rt.world_size, rt.rank, shuffle=True) if rt.distributed else None
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=int(settings.get("num_workers", 0)), drop_last=False,
                        pin_memory=rt.device.type == "cuda")
    epochs = int(settings.get("epochs", 1))
    total = int(settings.get("max_steps") or epochs * len(loader))
    epochs = math.ceil(total / max(1, len(loader)))
    warmup = int(settings.get("warmup_steps", 0))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / (warmup + 1))
                                                 * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    ckpt = out_dir / "last.pth"
    step, start_epoch = 0, 0
    if resume and ckpt.exists():
        state = load_checkpoint(ckpt, module, optimizer)
        step, start_epoch = state["step"], state["epoch"]
        schedule.last_epoch = step - 1
        schedule.step()
        if rt.is_main:
            print(f"resumed {ckpt} at step {step}")
    model = module
    if rt.distributed:
        model = DistributedDataParallel(module, device_ids=[rt.local_rank] if rt.device.type == "cuda" else None,
                                        find_unused_parameters=True)
    log = LossLog(out_dir / "log.csv", ["loss", *loss_terms], resume=resume and step > 0) if rt.is_main else None
    every = int(settings.get("checkpoint_every", 500))
    model.train()
    for epoch in range(start_epoch, epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        if hasattr(dataset, "epoch"):
            dataset.epoch = epoch
        for batch in loader:
            if step >= total:
                break
            loss, values = step_fn(model, _to(batch, rt.device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings.get("grad_clip"):
                torch.nn.utils.clip_grad_norm_(params, float(settings["grad_clip"]))
            optimizer.step()
            schedule.step()
            step += 1
            if log is not None:
                log.write(step, epoch, values, optimizer.param_groups[0]["lr"])
                if step % int(settings.get("print_every", 10)) == 0 or step == 1:
                    print(f"[{title}] step {step}/{total} epoch {epoch} "
                          + " ".join(f"{k} {v:.4f}" for k, v in values.items()), flush=True)
                if step % every == 0:
                    save_checkpoint(ckpt, module, optimizer, epoch, step)
        else:
            continue
        break
    if rt.is_main:
        save_checkpoint(ckpt, module, optimizer, epochs, step)
        log.plot(title)
    if rt.distributed:
        torch.distributed.barrier()
    return log
