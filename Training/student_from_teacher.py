"""A student that starts from the teacher's own blocks: SwiftMedSAM from LiteMedSAM on a CPU.

SwiftMedSAM keeps TinyViT's stage widths and drops blocks (depths 2-2-6-2 -> 1-2-2-2) and
shrinks the decoder (1 two-way layer, MLP 256, 4 heads, IoU head depth 2). Distilling it from
scratch takes GPU-days; started from a subset of the teacher's blocks it only has to learn
what the dropped blocks did, which fits a session on two CPU cores:

1. ``cache``: the teacher runs once over an augmented image pool (:mod:`Training.image_pool`)
   and its features are stored (float16) after stage 0 (``t0``), stage 1 (``t1``), stage 2
   (``t2``) and the neck (``emb``).
2. ``select``: which teacher blocks the student keeps is *measured*: every candidate subset
   (stage 0: 2 choices, stage 2: 15) is run with the teacher's other stages and scored by the
   embedding error against the teacher's; the best subset per stage wins.
3. ``encoder``: stage-local distillation. The kept stage-0 block (with the stage's patch
   merging) learns the teacher's stage-0 output on random 96x96 crops (the stage is fully
   convolutional, so a crop of the input gives that crop of the output away from its border);
   the two kept stage-2 blocks learn the teacher's stage-2 output from the teacher's stage-1
   output. Stages 1 and 3, the patch embedding and the neck are the teacher's, unchanged.
4. ``decoder``: the light decoder starts from the teacher's first two-way layer: the 256 MLP
   units with the largest measured contribution (mean activation x output weight norm), the
   8 heads merged into 4 by the pairing that changes the teacher's logits least (all 105
   pairings measured per attention), the IoU head's first and last layers. It is then
   distilled on the teacher's box outputs (boxes from the labels, jittered, and from the
   teacher's own masks): MSE on the low-resolution logits, Dice + BCE on the teacher's mask
   and MSE on the predicted IoU.
5. ``export``: the student's weights in float16 (when the masks do not change, else float32),
   checked to load strictly into the registry architecture, with a manifest (SHA-256, size)
   for ``LITEMEDSAM_MODELS_DIR``.

Every step writes into one run folder, checkpoints, and ``--resume`` continues::

    python -m Training.image_pool --index $DATA/index.json -o RUN/pool --images ...
    python -m Training.student_from_teacher cache   --run RUN
    python -m Training.student_from_teacher select  --run RUN
    python -m Training.student_from_teacher encoder --run RUN [--resume]
    python -m Training.student_from_teacher decoder --run RUN [--resume]
    python -m Training.student_from_teacher export  --run RUN -o RUN/export   # LITEMEDSAM_MODELS_DIR=RUN/export
    python -m Training.student_from_teacher times   --run RUN                 # eager ms per stage
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from LiteMedSAMLib.modeling import build_lite_medsam
from LiteMedSAMLib.preprocessing import prepare_slice

from .common import LossLog, save_checkpoint, seed_everything

GRID = 64  # embedding grid of a 256x256 input
CROP = 96  # stage-0 training crop (input pixels)
CROP_MARGIN = 2  # output pixels at the crop border left out of the loss


# ------------------------------------------------------------------------------ pool and cache
def pool_files(run: Path, name: str = "pool") -> list[Path]:
    files = sorted((run / name).glob("*.npz"))
    if not files:
        raise SystemExit(f"no pool images in {run / name}; build them with python -m Training.image_pool")
    return files


def load_pool_image(path: Path) -> tuple[torch.Tensor, np.ndarray]:
    with np.load(path, allow_pickle=False) as d:
        img, gt = d["img"], d["gt"]
    return prepare_slice(img)[0], gt


def teacher_features(encoder: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The teacher's features after stage 0, 1, 2 and the neck for a batch ``x``."""
    pe = encoder.patch_embed(x)
    t0 = encoder.layers[0](pe)
    t1 = encoder.layers[1](t0)
    t2 = encoder.layers[2](t1)
    t3 = encoder.layers[3](t2)
    emb = encoder.neck(t3.view(len(x), GRID, GRID, -1).permute(0, 3, 1, 2))
    return {"t0": t0, "t1": t1, "t2": t2, "emb": emb}


def cache_features(run: Path, pool: str = "pool", batch: int = 4) -> None:
    from LiteMedSAMLib.registry import load_model

    files = pool_files(run, pool)
    out = run / f"cache_{pool}"
    out.mkdir(exist_ok=True)
    todo = [f for f in files if not (out / f"{f.stem}.pt").exists()]
    encoder = load_model("litemedsam").image_encoder.eval()
    start = time.time()
    with torch.no_grad():
        for i in range(0, len(todo), batch):
            chunk = todo[i:i + batch]
            x = torch.stack([load_pool_image(f)[0] for f in chunk])
            feats = teacher_features(encoder, x)
            for j, f in enumerate(chunk):
                tmp = out / f"{f.stem}.tmp"
                torch.save({k: v[j].half().clone() for k, v in feats.items()}, tmp)
                tmp.rename(out / f"{f.stem}.pt")
            done = min(i + batch, len(todo))
            print(f"cached {done}/{len(todo)} ({time.time() - start:.0f} s)", flush=True)


def load_cached(run: Path, path: Path, pool: str = "pool") -> dict[str, torch.Tensor]:
    return torch.load(run / f"cache_{pool}" / f"{path.stem}.pt", weights_only=True)


def relative_error(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean squared error over the target's variance (0 = identical, 1 = as far as a constant)."""
    return float(F.mse_loss(pred.float(), target.float()) / target.float().var())


# ------------------------------------------------------------------------------ student assembly
def student_architecture(name: str = "swiftmedsam") -> dict:
    from LiteMedSAMLib.registry import get_spec

    return copy.deepcopy(get_spec(name).architecture)


def assemble_encoder(student: nn.Module, teacher: nn.Module, keep: dict[str, list[int]]) -> None:
    """Copy the teacher's encoder into the student: every stage whole, except stages whose
    kept block indices ``keep`` names (``{"0": [1], "2": [0, 3]}``)."""
    s_enc, t_enc = student.image_encoder, teacher.image_encoder
    s_enc.patch_embed.load_state_dict(t_enc.patch_embed.state_dict())
    s_enc.neck.load_state_dict(t_enc.neck.state_dict())
    for i, (s_layer, t_layer) in enumerate(zip(s_enc.layers, t_enc.layers)):
        blocks = keep.get(str(i), list(range(len(t_layer.blocks))))
        if len(blocks) != len(s_layer.blocks):
            raise ValueError(f"stage {i}: the student has {len(s_layer.blocks)} blocks, keep names {blocks}")
        for s_block, j in zip(s_layer.blocks, blocks):
            s_block.load_state_dict(t_layer.blocks[j].state_dict())
        if t_layer.downsample is not None:
            s_layer.downsample.load_state_dict(t_layer.downsample.state_dict())


def _run_blocks(blocks, downsample, x):
    for b in blocks:
        x = b(x)
    return x if downsample is None else downsample(x)


def select_blocks(run: Path, count: int = 16, model: str = "swiftmedsam") -> dict:
    """Score every candidate block subset of the stages the student shortens."""
    from LiteMedSAMLib.registry import load_model

    teacher = load_model("litemedsam").eval()
    t_enc = teacher.image_encoder
    depths = student_architecture(model)["encoder"]["depths"]
    files = pool_files(run)[::max(1, len(pool_files(run)) // count)][:count]
    cached = [load_cached(run, f) for f in files]
    x = torch.stack([load_pool_image(f)[0] for f in files])
    emb = torch.stack([c["emb"] for c in cached]).float()
    result: dict = {"images": [f.name for f in files], "stages": {}}

    def finish(stage: int, y: torch.Tensor) -> torch.Tensor:
        for layer in t_enc.layers[stage + 1:]:
            y = layer(y)
        return t_enc.neck(y.view(len(y), GRID, GRID, -1).permute(0, 3, 1, 2))

    with torch.no_grad():
        pe = t_enc.patch_embed(x)
        inputs = {0: pe, 1: torch.stack([c["t0"] for c in cached]).float(),
                  2: torch.stack([c["t1"] for c in cached]).float(),
                  3: torch.stack([c["t2"] for c in cached]).float()}
        for stage, layer in enumerate(t_enc.layers):
            if depths[stage] == len(layer.blocks):
                continue
            scores = []
            for subset in itertools.combinations(range(len(layer.blocks)), depths[stage]):
                y = _run_blocks([layer.blocks[j] for j in subset], layer.downsample, inputs[stage])
                err = relative_error(finish(stage, y), emb)
                scores.append({"blocks": list(subset), "embedding_error": round(err, 5)})
                print(f"stage {stage} keep {list(subset)}: embedding error {err:.4f}", flush=True)
            scores.sort(key=lambda s: s["embedding_error"])
            result["stages"][str(stage)] = {"candidates": scores, "keep": scores[0]["blocks"]}
    keep = {k: v["keep"] for k, v in result["stages"].items()}
    student = build_lite_medsam(student_architecture(model)).eval()
    assemble_encoder(student, teacher, keep)
    with torch.no_grad():
        result["combined_error"] = round(relative_error(student.image_encoder(x), emb), 5)
    result["keep"] = keep
    print(f"kept {keep}: combined embedding error {result['combined_error']:.4f}")
    (run / "selection.json").write_text(json.dumps(result, indent=1))
    return result


# ------------------------------------------------------------------------------ encoder training
def _cosine(step: int, total: int, warmup: int) -> float:
    return min(1.0, (step + 1) / (warmup + 1)) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))


def _stage0_batch(run, files, rng, batch, enc):
    """Random crops of pool images through the (frozen) patch embedding, with the teacher's
    stage-0 output at the same place."""
    xs, targets = [], []
    for f in rng.choice(files, batch):
        x, _ = load_pool_image(f)
        t0 = load_cached(run, f)["t0"].float().view(GRID * 2, GRID * 2, -1)
        oy, ox = (int(v) * 2 for v in rng.integers(0, (256 - CROP) // 2 + 1, size=2))
        xs.append(x[:, oy:oy + CROP, ox:ox + CROP])
        targets.append(t0[oy // 2:(oy + CROP) // 2, ox // 2:(ox + CROP) // 2])
    with torch.no_grad():
        pe = enc.patch_embed(torch.stack(xs))
    return pe, torch.stack(targets)


def _stage2_batch(run, files, rng, batch, student_input: bool = False, target: str = "t2"):
    picks = list(rng.choice(files, batch))
    cached = [load_cached(run, f) for f in picks]
    if student_input:
        x = torch.stack([torch.load(run / "cache_student_t1" / f"{f.stem}.pt", weights_only=True) for f in picks])
    else:
        x = torch.stack([c["t1"] for c in cached])
    return x.float(), torch.stack([c[target] for c in cached]).float()


def cache_student_t1(run: Path, enc: nn.Module, teacher_enc: nn.Module, files: list[Path], tag: str) -> None:
    """The stage-1 output the student's stage 2 really receives (its own stage 0, then the
    teacher's stage 1), so that stage 2 also learns to undo stage 0's remaining error."""
    out = run / "cache_student_t1"
    marker = out / "stage0_steps.txt"
    if marker.exists() and marker.read_text() == tag:
        return
    out.mkdir(exist_ok=True)
    start = time.time()
    with torch.no_grad():
        for i in range(0, len(files), 4):
            chunk = files[i:i + 4]
            x = torch.stack([load_pool_image(f)[0] for f in chunk])
            t1 = teacher_enc.layers[1](enc.layers[0](enc.patch_embed(x)))
            for f, v in zip(chunk, t1):
                torch.save(v.half().clone(), out / f"{f.stem}.pt")
            print(f"student stage-1 inputs {min(i + 4, len(files))}/{len(files)} ({time.time() - start:.0f} s)",
                  flush=True)
    marker.write_text(tag)


def train_encoder(run: Path, steps: dict[str, int], batch: dict[str, int], lr: float = 2e-4,
                  resume: bool = False, model: str = "swiftmedsam", seed: int = 2024,
                  stage2_input: str = "teacher", stage2_target: str = "stage") -> Path:
    """Stage-local distillation of the stages the student shortened; writes
    ``<run>/encoder/student.pth`` (full model state: decoder still the teacher's shape-copy).

    ``stage2_input``: ``"teacher"`` trains stage 2 on the teacher's stage-1 output;
    ``"student"`` on the student's own (its stage 0, the teacher's stage 1), which is what it
    receives at inference, so it also compensates stage 0's error. ``stage2_target``:
    ``"stage"`` matches the teacher's stage-2 output; ``"embedding"`` the final embedding,
    through the (frozen) stage 3 and neck, so that errors stage 3 amplifies weigh more."""
    from LiteMedSAMLib.registry import load_model

    seed_everything(seed)
    out = run / "encoder"
    out.mkdir(exist_ok=True)
    teacher = load_model("litemedsam").eval()
    keep = json.loads((run / "selection.json").read_text())["keep"]
    student = build_lite_medsam(student_architecture(model))
    assemble_encoder(student, teacher, keep)
    student.prompt_encoder.load_state_dict(teacher.prompt_encoder.state_dict())
    enc = student.image_encoder.eval()  # BatchNorm keeps the teacher's statistics
    files = pool_files(run)
    ckpt = out / "last.pth"
    state = torch.load(ckpt, weights_only=True) if resume and ckpt.exists() else None
    if state is not None:
        enc.load_state_dict(state["model"])
    log = LossLog(out / "log.csv", ["loss", "stage0", "stage2"], resume=state is not None)
    done = dict(state["done"]) if state is not None else {}
    for phase, stage in (("stage0", 0), ("stage2", 2)):
        total = steps[phase]
        step = done.get(phase, 0)
        if step >= total:
            continue
        params = list(enc.layers[stage].parameters())
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        if state is not None and state.get("phase") == phase:
            opt.load_state_dict(state["optimizer"])
        rng = np.random.default_rng([seed, stage, step])
        own_input = stage == 2 and stage2_input == "student"
        if stage == 2 and stage2_target == "embedding":  # through stage 3 and the neck, frozen
            enc.layers[3].requires_grad_(False)
            enc.neck.requires_grad_(False)
        if own_input:
            cache_student_t1(run, enc, teacher.image_encoder, files, str(done.get("stage0", 0)))
        while step < total:
            for group in opt.param_groups:
                group["lr"] = lr * _cosine(step, total, 20)
            if stage == 0:
                x, target = _stage0_batch(run, files, rng, batch[phase], enc)
                y = enc.layers[0](x).view(target.shape)
                m = CROP_MARGIN
                y, target = y[:, m:-m, m:-m], target[:, m:-m, m:-m]
            else:
                to_embedding = stage2_target == "embedding"
                x, target = _stage2_batch(run, files, rng, batch[phase], own_input,
                                          "emb" if to_embedding else "t2")
                y = enc.layers[2](x)
                if to_embedding:
                    y = enc.neck(enc.layers[3](y).view(len(y), GRID, GRID, -1).permute(0, 3, 1, 2))
            loss = F.mse_loss(y, target) / target.var()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            done[phase] = step
            log.write(step + sum(v for k, v in done.items() if k != phase), 0,
                      {"loss": loss.item(), "stage0": loss.item() if stage == 0 else float("nan"),
                       "stage2": loss.item() if stage == 2 else float("nan")}, opt.param_groups[0]["lr"])
            if step % 10 == 0 or step == 1:
                print(f"[{phase}] step {step}/{total} relative error {loss.item():.4f}", flush=True)
            if step % 25 == 0 or step == total:
                save_checkpoint(ckpt, enc, opt, 0, step, {"phase": phase, "done": done})
    log.plot(f"{model}: stage-local encoder distillation (relative MSE)")
    result = out / "student.pth"
    torch.save(student.state_dict(), result)
    return result


def embedding_report(run: Path, weights: Path, pool: str = "val", model: str = "swiftmedsam") -> dict:
    """Relative embedding error (and cosine similarity) of a student against the teacher."""
    student = build_lite_medsam(student_architecture(model)).eval()
    student.load_state_dict(torch.load(weights, weights_only=True), strict=False)
    errs, cos = [], []
    with torch.no_grad():
        for f in pool_files(run, pool):
            x, _ = load_pool_image(f)
            target = load_cached(run, f, pool)["emb"].float()[None]
            y = student.image_encoder(x[None])
            errs.append(relative_error(y, target))
            cos.append(float(F.cosine_similarity(y.flatten(), target.flatten(), dim=0)))
    return {"images": len(errs), "relative_error": float(np.mean(errs)), "cosine": float(np.mean(cos))}


# ------------------------------------------------------------------------------ decoder
def _prompts(gt: np.ndarray, rng: np.random.Generator, jitter: int = 5, min_pixels: int = 20):
    labels, counts = np.unique(gt, return_counts=True)
    labels = [v for v, c in zip(labels, counts) if v and c >= min_pixels]
    if not labels:
        return None
    mask = gt == rng.choice(labels)
    ys, xs = np.nonzero(mask)
    s = rng.integers(0, jitter + 1, 4)
    return np.array([max(0, xs.min() - s[0]), max(0, ys.min() - s[1]),
                     min(255, xs.max() + s[2]), min(255, ys.max() + s[3])], np.float32)


def decoder_data(run: Path, pool: str = "pool", per_image: int = 4, seed: int = 0):
    """(cached teacher embedding index, box) pairs from every labelled pool image."""
    rng = np.random.default_rng(seed)
    items = []
    for f in pool_files(run, pool):
        with np.load(f) as d:
            gt = d["gt"]
        for _ in range(per_image):
            box = _prompts(gt, rng)
            if box is not None:
                items.append((f, box))
    return items


def _decode(model: nn.Module, emb: torch.Tensor, boxes: torch.Tensor):
    return model.forward_decoder(emb, boxes[:, None, :])


def _pair_heads(attn: nn.Module, pairs: list[tuple[int, int]], old_heads: int) -> None:
    """Reorder an attention's channels so that new head ``h`` holds old heads ``pairs[h]``."""
    d = attn.internal_dim // old_heads
    order = torch.cat([torch.arange(h * d, (h + 1) * d) for pair in pairs for h in pair])
    with torch.no_grad():
        for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
            proj.weight.copy_(proj.weight[order])
            proj.bias.copy_(proj.bias[order])
        attn.out_proj.weight.copy_(attn.out_proj.weight[:, order])


def _pairings(items: list[int]):
    if not items:
        yield []
        return
    first = items[0]
    for i in range(1, len(items)):
        rest = items[1:i] + items[i + 1:]
        for tail in _pairings(rest):
            yield [(first, items[i])] + tail


def init_decoder(student: nn.Module, teacher: nn.Module, emb: torch.Tensor, boxes: torch.Tensor) -> dict:
    """Start the light decoder from the teacher's (see the module docstring); returns what was
    chosen and measured."""
    s_dec, t_dec = student.mask_decoder, teacher.mask_decoder
    report: dict = {}
    # the parts with the teacher's shapes
    for name in ("iou_token", "mask_tokens", "output_upscaling", "output_hypernetworks_mlps"):
        getattr(s_dec, name).load_state_dict(getattr(t_dec, name).state_dict())
    s_iou, t_iou = s_dec.iou_prediction_head.layers, t_dec.iou_prediction_head.layers
    s_iou[0].load_state_dict(t_iou[0].state_dict())
    s_iou[-1].load_state_dict(t_iou[-1].state_dict())
    s_tr, t_tr = s_dec.transformer, t_dec.transformer
    s_layer, t_layer = s_tr.layers[0], t_tr.layers[0]
    for name in ("norm1", "norm2", "norm3", "norm4"):
        getattr(s_layer, name).load_state_dict(getattr(t_layer, name).state_dict())
    s_tr.norm_final_attn.load_state_dict(t_tr.norm_final_attn.state_dict())
    attns = ("self_attn", "cross_attn_token_to_image", "cross_attn_image_to_token")
    for name in attns:
        getattr(s_layer, name).load_state_dict(getattr(t_layer, name).state_dict())
    s_tr.final_attn_token_to_image.load_state_dict(t_tr.final_attn_token_to_image.state_dict())
    # MLP units: mean |ReLU(fc1 x)| on the teacher's own tokens x output-weight norm
    acts = []
    hook = t_layer.mlp.lin1.register_forward_hook(lambda m, i, o: acts.append(F.relu(o).abs().mean((0, 1))))
    with torch.no_grad():
        target, target_iou = _decode(teacher, emb, boxes)
    hook.remove()
    importance = (acts[0] * t_layer.mlp.lin2.weight.norm(dim=0)).detach()
    units = importance.argsort(descending=True)[:s_layer.mlp.lin1.out_features].sort().values
    with torch.no_grad():
        s_layer.mlp.lin1.weight.copy_(t_layer.mlp.lin1.weight[units])
        s_layer.mlp.lin1.bias.copy_(t_layer.mlp.lin1.bias[units])
        s_layer.mlp.lin2.weight.copy_(t_layer.mlp.lin2.weight[:, units])
        s_layer.mlp.lin2.bias.copy_(t_layer.mlp.lin2.bias)
    report["mlp_units_kept_importance"] = round(float(importance[units].sum() / importance.sum()), 4)

    def error() -> float:
        with torch.no_grad():
            return float(F.mse_loss(_decode(student, emb, boxes)[0], target))

    report["logit_mse_before_pairing"] = round(error(), 4)
    old_heads = t_layer.self_attn.num_heads
    modules = [(f"layer0.{n}", getattr(s_layer, n)) for n in attns]
    modules.append(("final_attn_token_to_image", s_tr.final_attn_token_to_image))
    report["pairings"] = {}
    for name, attn in modules:
        original = copy.deepcopy(attn.state_dict())
        best = None
        for pairs in _pairings(list(range(old_heads))):
            attn.load_state_dict(original)
            _pair_heads(attn, pairs, old_heads)
            err = error()
            if best is None or err < best[0]:
                best = (err, pairs)
        attn.load_state_dict(original)
        _pair_heads(attn, best[1], old_heads)
        report["pairings"][name] = {"pairs": best[1], "logit_mse": round(best[0], 4)}
        print(f"{name}: heads paired {best[1]}: logit MSE {best[0]:.4f}", flush=True)
    report["logit_mse_after_init"] = round(error(), 4)
    return report


def _dice_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum((1, 2, 3))
    dice = 1 - (2 * inter + 1) / (prob.sum((1, 2, 3)) + target.sum((1, 2, 3)) + 1)
    return dice.mean() + F.binary_cross_entropy_with_logits(logits, target)


def train_decoder(run: Path, steps: int, batch: int = 16, lr: float = 1e-4, resume: bool = False,
                  model: str = "swiftmedsam", seed: int = 2024) -> Path:
    """Initialise (measured) and distil the light decoder on cached teacher embeddings."""
    from LiteMedSAMLib.registry import load_model

    seed_everything(seed)
    out = run / "decoder"
    out.mkdir(exist_ok=True)
    teacher = load_model("litemedsam").eval()
    student = build_lite_medsam(student_architecture(model))
    student.load_state_dict(torch.load(run / "encoder" / "student.pth", weights_only=True))
    student.eval()
    items = decoder_data(run)
    rng = np.random.default_rng(seed)
    cache: dict[Path, torch.Tensor] = {}

    def emb_of(f: Path) -> torch.Tensor:
        if f not in cache:
            cache[f] = load_cached(run, f)["emb"]
        return cache[f].float()

    def sample(n: int):
        picks = [items[i] for i in rng.choice(len(items), n)]
        emb = torch.stack([emb_of(f) for f, _ in picks])
        boxes = torch.from_numpy(np.stack([b for _, b in picks]))
        with torch.no_grad():
            logits, iou = _decode(teacher, emb, boxes)
        if rng.random() < 0.3:  # boxes of the teacher's own masks
            own = []
            for m, b in zip((logits[:, 0] > 0).numpy(), boxes.numpy()):
                ys, xs = np.nonzero(m)
                own.append([xs.min(), ys.min(), xs.max(), ys.max()] if len(xs) else b)
            boxes = torch.tensor(np.array(own), dtype=torch.float32)
            with torch.no_grad():
                logits, iou = _decode(teacher, emb, boxes)
        return emb, boxes, logits, iou

    ckpt = out / "last.pth"
    state = torch.load(ckpt, weights_only=True) if resume and ckpt.exists() else None
    if state is None:
        emb, boxes, _, _ = sample(8)  # 8 prompts: 420 decoder passes to pair the heads
        report = init_decoder(student, teacher, emb, boxes)
        (out / "init.json").write_text(json.dumps(report, indent=1))
        step = 0
    else:
        student.mask_decoder.load_state_dict(state["model"])
        step = state["step"]
    params = list(student.mask_decoder.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    if state is not None:
        opt.load_state_dict(state["optimizer"])
    rng = np.random.default_rng([seed, step])
    log = LossLog(out / "log.csv", ["loss", "logit_mse", "dice_bce", "iou_mse"], resume=state is not None)
    while step < steps:
        for group in opt.param_groups:
            group["lr"] = lr * _cosine(step, steps, 20)
        emb, boxes, target, target_iou = sample(batch)
        logits, iou = _decode(student, emb, boxes)
        mse = F.mse_loss(logits, target)
        seg = _dice_bce(logits, (target > 0).float())
        iou_mse = F.mse_loss(iou, target_iou)
        loss = 0.1 * mse + seg + iou_mse
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        log.write(step, 0, {"loss": loss.item(), "logit_mse": mse.item(), "dice_bce": seg.item(),
                            "iou_mse": iou_mse.item()}, opt.param_groups[0]["lr"])
        if step % 10 == 0 or step == 1:
            print(f"[decoder] step {step}/{steps} loss {loss.item():.4f} logit MSE {mse.item():.3f} "
                  f"dice+bce {seg.item():.4f}", flush=True)
        if step % 50 == 0 or step == steps:
            save_checkpoint(ckpt, student.mask_decoder, opt, 0, step)
    log.plot(f"{model}: decoder distillation")
    result = out / "student.pth"
    torch.save(student.state_dict(), result)
    return result


def stage_times(models: list[str], repeats: int = 5) -> dict:
    """Eager milliseconds per encoder stage (batch 1, median of ``repeats``) of each model,
    the decoder pass included: where a student's time goes and what each cut saves."""
    from LiteMedSAMLib.errors import LiteMedSAMError
    from LiteMedSAMLib.registry import load_model

    out = {}
    x = torch.rand(1, 3, 256, 256)
    for name in models:
        try:
            model = load_model(name).eval()
        except LiteMedSAMError:  # not installed: the time does not depend on the weights
            model = build_lite_medsam(student_architecture(name)).eval()
        enc = model.image_encoder
        parts = [("patch_embed", enc.patch_embed)] + [(f"stage{i}", layer) for i, layer in enumerate(enc.layers)]
        times: dict[str, list[float]] = {}
        with torch.no_grad():
            for r in range(repeats + 1):
                y = x
                for label, module in parts:
                    t = time.perf_counter()
                    y = module(y)
                    if r:
                        times.setdefault(label, []).append(1000 * (time.perf_counter() - t))
                t = time.perf_counter()
                emb = enc.neck(y.view(1, GRID, GRID, -1).permute(0, 3, 1, 2))
                if r:
                    times.setdefault("neck", []).append(1000 * (time.perf_counter() - t))
                t = time.perf_counter()
                model.decode(emb, boxes=torch.tensor([[60.0, 60.0, 180.0, 200.0]]))
                if r:
                    times.setdefault("decoder", []).append(1000 * (time.perf_counter() - t))
        out[name] = {k: round(float(np.median(v)), 1) for k, v in times.items()}
        out[name]["encoder"] = round(sum(v for k, v in out[name].items() if k != "decoder"), 1)
        print(name, out[name], flush=True)
    return out


# ------------------------------------------------------------------------------ export
def export(run: Path, folder: Path, model: str = "swiftmedsam", pool: str = "val") -> Path:
    """Write the student through :func:`Training.export.export` (weights + manifest for
    ``LITEMEDSAM_MODELS_DIR``), in float16 if no mask of the measuring pool changes, else
    float32; the check goes into the entry's ``training``. Returns the manifest."""
    from .common import load_config
    from .export import export as export_model

    # the encoder of the encoder stage and the decoder of the decoder stage (they may run apart)
    state = torch.load(run / "encoder" / "student.pth", weights_only=True)
    decoder = torch.load(run / "decoder" / "student.pth", weights_only=True)
    state.update({k: v for k, v in decoder.items() if k.startswith("mask_decoder.")})
    full = build_lite_medsam(student_architecture(model)).eval()
    full.load_state_dict(state, strict=True)
    half = build_lite_medsam(student_architecture(model)).eval()
    half.load_state_dict({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    changed, pixels = 0, 0
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for f in pool_files(run, pool):
            x, gt = load_pool_image(f)
            box = _prompts(gt, rng)
            if box is None:
                continue
            boxes = torch.from_numpy(box)[None]
            a = _decode(full, full.image_encoder(x[None]), boxes)[0] > 0
            b = _decode(half, half.image_encoder(x[None]), boxes)[0] > 0
            changed += int((a != b).sum())
            pixels += a.numel()
    joined = run / "student_joined.pth"
    torch.save(state, joined)
    cfg = load_config(Path(__file__).with_name("configs") / f"{model.replace('-', '_')}.json")
    manifest = export_model(cfg, joined, folder, float16=changed == 0)
    data = json.loads(manifest.read_text())
    training = data["models"][model]["training"]  # the schema's free-form "how it was made"
    training["recipe"] = "Training/student_from_teacher.py"
    training["float16_check"] = {"float16": changed == 0, "mask_pixels_changed": changed, "pixels_compared": pixels}
    manifest.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(training["float16_check"]))
    return manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m Training.student_from_teacher", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["cache", "select", "encoder", "report", "decoder", "export", "times"])
    p.add_argument("--run", required=True, type=Path, help="the run folder (holds pool/)")
    p.add_argument("--model", default="swiftmedsam", help="the student's registry name")
    p.add_argument("--pool", default="pool", help="pool folder name inside the run (cache, report)")
    p.add_argument("--stage0-steps", type=int, default=300)
    p.add_argument("--stage2-steps", type=int, default=300)
    p.add_argument("--stage0-batch", type=int, default=8)
    p.add_argument("--stage2-batch", type=int, default=4)
    p.add_argument("--decoder-steps", type=int, default=300)
    p.add_argument("--decoder-batch", type=int, default=8)
    p.add_argument("--stage2-input", default="teacher", choices=["teacher", "student"],
                   help="stage 2 learns from the teacher's stage-1 output or the student's own")
    p.add_argument("--stage2-target", default="stage", choices=["stage", "embedding"],
                   help="stage 2 matches the teacher's stage-2 output or the final embedding")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--resume", action="store_true")
    p.add_argument("-o", "--output", type=Path, help="export: the folder for the weights and their manifest")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.command == "cache":
        cache_features(args.run, args.pool)
    elif args.command == "select":
        select_blocks(args.run, model=args.model)
    elif args.command == "encoder":
        path = train_encoder(args.run, {"stage0": args.stage0_steps, "stage2": args.stage2_steps},
                             {"stage0": args.stage0_batch, "stage2": args.stage2_batch},
                             lr=args.lr or 2e-4, resume=args.resume, model=args.model,
                             stage2_input=args.stage2_input, stage2_target=args.stage2_target)
        print(f"student: {path}")
    elif args.command == "report":
        stage = "decoder" if (args.run / "decoder" / "student.pth").exists() else "encoder"
        weights = args.run / stage / "student.pth"
        print(json.dumps(embedding_report(args.run, weights, args.pool, args.model), indent=1))
    elif args.command == "decoder":
        path = train_decoder(args.run, args.decoder_steps, args.decoder_batch, lr=args.lr or 1e-4,
                             resume=args.resume, model=args.model)
        print(f"student: {path}")
    elif args.command == "times":
        print(json.dumps(stage_times(["litemedsam", args.model]), indent=1))
    else:
        if args.output is None:
            p.error("export needs -o/--output")
        export(args.run, args.output, args.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
