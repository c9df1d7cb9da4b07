"""Training/click_decoder.py on a CPU: the click and scribble simulation, then cache -> train
(with resume) -> export on two real frames of the shipped example (a smoke run: it proves the
pipeline, not the model; the shipped decoder was trained on the index's train split only).
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from scipy import ndimage

from LiteMedSAMLib.errors import LiteMedSAMError
from LiteMedSAMLib.evaluation.clicks import next_click
from LiteMedSAMLib.example import EXAMPLE_IMAGE, EXAMPLE_LABEL
from Training import click_decoder as tc


def _disk(shape, centre, radius):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2


def test_simulated_click_is_the_protocols_centre_of_the_largest_error():
    gt = _disk((64, 64), (32, 32), 15)
    pred = gt.copy()
    pred[20:45, 10:30] = False  # a big missed part
    pred[2:5, 2:5] = True       # a small wrong part
    x, y, positive = tc.largest_error_click(pred, gt)
    ref = next_click(pred[None], gt[None])
    assert (x, y) == (ref.x, ref.y) and positive and not pred[y, x] and gt[y, x]
    assert tc.largest_error_click(gt, gt) is None


def test_scribble_stays_inside_its_error_region():
    rng = np.random.default_rng(0)
    region = np.zeros((64, 64), dtype=bool)
    region[30:34, 5:60] = True  # a long thin missed strip
    stroke = tc.scribble_in_region(region, 30, 31, rng)
    assert len(stroke) > 5 and region[stroke[:, 1], stroke[:, 0]].all()
    assert np.abs(np.diff(stroke, axis=0)).max() <= 1  # a connected pixel path
    assert len(tc.sample_along(stroke)) == min(len(stroke), tc.SCRIBBLE_POINTS)


def test_box_jitter_holds_the_object_mostly_and_box_with_holds_positive_points():
    rng = np.random.default_rng(1)
    gt = _disk((256, 256), (100, 120), 20)
    boxes = np.array([tc.jittered_box(gt, rng) for _ in range(200)])
    holds = (boxes[:, 0] <= 100) & (boxes[:, 1] <= 80) & (boxes[:, 2] >= 140) & (boxes[:, 3] >= 120)
    assert 0.7 < holds.mean() < 1.0  # mostly looser, sometimes tighter, as propagation gives them
    box = tc.box_with(np.array([100.0, 80, 140, 120]), np.array([[150.0, 100], [90, 70]]), np.array([1, 0]))
    assert box.tolist() == [100.0, 80.0, 153.0, 120.0]


def test_near_start_masks_are_nearly_the_reference_with_rim_and_bump_errors(model):
    rng = np.random.default_rng(4)
    gt = _disk((256, 256), (128, 128), 40)
    masks = [tc.near_mask(gt, rng) for _ in range(100)]
    scores = np.array([tc.dsc(m, gt) for m in masks])
    assert scores.min() > 0.8 and 0.9 < scores.mean() < 0.99 and (scores < 1).mean() > 0.8
    # every error lies near the reference's border (a rim or a bump on it), none far inside or out
    near_border = np.abs(tc.ndimage.distance_transform_edt(~gt) - tc.ndimage.distance_transform_edt(gt)) <= 25
    assert all(not ((m ^ gt) & ~near_border).any() for m in masks)
    # a sample with near_p=1 starts from such a mask (its +/-8 logits), not from the box's result
    official = (model.prompt_encoder.eval(), model.mask_decoder.eval())
    emb = torch.zeros(1, 256, 64, 64)
    with torch.no_grad():
        _, _, d = tc.simulate(*official, official, emb, gt, 1, np.random.default_rng(5), near_p=1.0)
    replay = np.random.default_rng(5)
    tc.jittered_box(gt, replay), replay.random()
    assert d[0] == pytest.approx(tc.dsc(tc.near_mask(gt, replay), gt)) and d[0] < 1


def test_big_errors_miss_or_leak_a_large_part_and_mask_boxes_leave_a_miss_outside_the_box(model, monkeypatch):
    rng = np.random.default_rng(6)
    gt = _disk((256, 256), (128, 128), 40)
    masks = [tc.big_error(gt, rng) for _ in range(40)]
    missed = [m for m in masks if not (m & ~gt).any()]
    leaked = [m for m in masks if not (gt & ~m).any()]
    assert missed and leaked and len(missed) + len(leaked) == len(masks)
    assert all(0.2 < (gt & ~m).sum() / gt.sum() < 0.65 for m in missed)  # a lobe cut off
    assert all((m & ~gt).sum() > 0.1 * gt.sum() for m in leaked)        # a neighbour taken in
    # a missed part lies outside the cut mask's own propagation box (what the library prompts a
    # propagated slice with), so only the clicks can say it belongs
    for m in missed:
        x0, y0, x1, y1 = tc.model_box(m)
        assert gt.sum() > gt[int(y0):int(y1) + 1, int(x0):int(x1) + 1].sum()
    # simulate prompts such a start with its own box when mask_box_p says so, else with the reference's
    official = (model.prompt_encoder.eval(), model.mask_decoder.eval())
    emb = torch.zeros(1, 256, 64, 64)
    boxes = []
    decode = tc.decode
    monkeypatch.setattr(tc, "decode",
                        lambda pe, md, e, box, *a: boxes.append(np.asarray(box)) or decode(pe, md, e, box, *a))
    monkeypatch.setattr(tc, "largest_error_click", lambda pred, ref, rng=None, jitter=0.0: (128, 128, False))
    for mask_box_p in (1.0, 0.0):
        boxes.clear()
        with torch.no_grad():
            tc.simulate(*official, official, emb, gt, 1, np.random.default_rng(8), near_p=1.0, big_p=1.0,
                        mask_box_p=mask_box_p)
        replay = np.random.default_rng(8)
        reference_box = tc.jittered_box(gt, replay)
        replay.random()
        start = tc.near_mask(gt, replay, 1.0)
        expected = tc.model_box(start) if mask_box_p else reference_box
        assert len(boxes) == 1 and np.array_equal(boxes[0], expected)


def test_click_region_loss_grades_the_clicked_error_regions_alone(model):
    gt = _disk((256, 256), (128, 128), 40)
    logits = torch.full((1, 1, 256, 256), -8.0)
    logits[0, 0][torch.from_numpy(gt)] = 8.0
    logits[0, 0, 128, 100:110] = -8.0  # a thin missed strip, the only wrong pixels
    gt_t = torch.from_numpy(gt.astype(np.float32))[None, None]
    clicked = torch.zeros(1, 1, 256, 256, dtype=torch.bool)
    assert float(tc.click_region_loss(logits, gt_t, clicked)) == 0.0
    clicked[0, 0, 128, 100:110] = True
    # the mean over the 10 clicked pixels (all wrong by 8 logits), where the frame's BCE is ~0
    assert float(tc.click_region_loss(logits, gt_t, clicked)) == pytest.approx(8.0, abs=1e-3)
    assert float(tc.F.binary_cross_entropy_with_logits(logits, gt_t)) < 0.002
    # simulate hands each graded round the error region its click pointed at, taken at the click
    official = (model.prompt_encoder.eval(), model.mask_decoder.eval())
    emb = torch.zeros(1, 256, 64, 64)
    with torch.no_grad():
        outputs, _, _ = tc.simulate(*official, official, emb, gt, 1, np.random.default_rng(5), near_p=1.0,
                                    scribble_p=0.0, jitter=0.0)
    replay = np.random.default_rng(5)
    tc.jittered_box(gt, replay), replay.random()
    start = tc.near_mask(gt, replay)
    x, y, _ = tc.largest_error_click(start, gt)
    region = outputs[0][2][0, 0].numpy()
    labels, _ = ndimage.label(start ^ gt, structure=np.ones((3, 3), dtype=bool))
    assert region[y, x] and np.array_equal(region, labels == labels[y, x])


def test_cache_train_resume_export(tmp_path, model):
    cache, run = tmp_path / "cache", tmp_path / "run"
    assert tc.main(["cache", "--pair", str(EXAMPLE_IMAGE), str(EXAMPLE_LABEL), "-o", str(cache),
                    "--frames", "2", "--threads", "2"]) == 0
    frames = sorted(cache.glob("*.pt"))
    assert len(frames) == 2
    item = torch.load(frames[0], weights_only=True)
    assert item["embedding"].shape == (256, 64, 64) and item["embedding"].dtype == torch.float16
    assert item["label"].shape == (256, 256) and set(item["ids"]) <= {1, 2, 3}
    assert all((item["label"] == i).sum() >= tc.MIN_PIXELS for i in item["ids"])

    common = ["--cache", str(cache), "-o", str(run), "--accumulate", "1", "--warmup", "1", "--lr", "1e-4"]
    assert tc.main(["train", *common, "--steps", "2"]) == 0
    assert tc.main(["train", *common, "--steps", "3", "--resume", "--near-start", "0.5", "--click-weight", "1"]) == 0
    rows = list(csv.DictReader(open(run / "log.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]  # resumed at step 2, one more step
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    assert (run / "log.png").stat().st_size > 0
    val = list(csv.DictReader(open(run / "val.csv")))
    assert {r["which"] for r in val} == {"trained", "official"}
    # the graded round changed the weights
    state = torch.load(run / "last.pth", weights_only=False)
    assert any(not torch.equal(state["mask_decoder"][k], v) for k, v in model.mask_decoder.state_dict().items())

    out = tmp_path / "decoder.pth"
    assert tc.main(["export", "--run", str(run), "-o", str(out), "--fp16"]) == 0
    weights = torch.load(out, weights_only=True)
    expected = {f"prompt_encoder.{k}" for k in model.prompt_encoder.state_dict()}
    expected |= {f"mask_decoder.{k}" for k in model.mask_decoder.state_dict()}
    assert set(weights) == expected
    assert all(v.dtype == torch.float16 for v in weights.values() if v.is_floating_point())


def test_propagation_box_and_carried_correction_match_the_library():
    from LiteMedSAMLib.preprocessing import box_from_mask_model

    mask = np.zeros((256, 256), dtype=np.uint8)
    mask[40:90, 100:180] = 1
    assert tc.model_box(mask).tolist() == box_from_mask_model(mask).tolist()  # square slice: same grid
    assert tc.model_box(np.zeros((256, 256), bool)) is None
    assert tc.chain_slices(4, 8) == [1, 2, 3, 2, 1, 0, 1, 2]  # a long sweep, back and forth over a run
    rng = np.random.default_rng(3)
    gt = _disk((256, 256), (128, 128), 30)
    for _ in range(10):
        logits = tc.perturbed_logits(gt, rng)
        assert logits.shape == (1, 1, 256, 256) and set(np.unique(logits.numpy())) == {-8.0, 8.0}
        assert tc.dsc(logits[0, 0].numpy() > 0, gt) > 0.9  # at most 2 px off


def test_propagation_runs_cache_and_train(tmp_path, model):
    """Runs of K slices of one object are cached with every slice encoded, and the training
    sweeps them through the decoder with the neighbour's logits (loss on each carried slice)."""
    cache, run = tmp_path / "seq", tmp_path / "run"
    assert tc.main(["cache", "--pair", str(EXAMPLE_IMAGE), str(EXAMPLE_LABEL), "-o", str(cache),
                    "--frames", "0", "--sequences", "2", "--sequence-length", "3", "--threads", "2"]) == 0
    files = sorted(cache.glob("seq_*.pt"))
    assert len(files) == 2
    for path in files:
        item = torch.load(path, weights_only=True)
        assert item["embeddings"].shape == (3, 256, 64, 64) and item["labels"].shape == (3, 256, 256)
        (obj,) = item["ids"]
        assert (item["labels"][0] == obj).sum() >= 64  # the run starts where the object is
        assert item["kind"].startswith("seq")
    frames = tc.Frames(cache, val_fraction=0.0)
    assert sorted(frames.seq_train) == [p.name for p in files]
    embs, gts = frames.run(frames.seq_train[0])
    outputs, d_official, d_carried = tc.simulate_propagation(
        model.prompt_encoder, model.mask_decoder, (model.prompt_encoder, model.mask_decoder), embs, gts,
        np.random.default_rng(0), corrected_p=0.0, grad=False)
    assert 1 <= len(outputs) <= 2 and len(d_official) == len(d_carried) == len(outputs)
    assert all(0 <= d <= 1 for d in d_official + d_carried)
    emb, gt = frames.sample(frames.seq_train, np.random.default_rng(1))  # a slice as a correction frame
    assert emb.shape == (1, 256, 64, 64) and gt.sum() >= tc.MIN_PIXELS

    assert tc.main(["train", "--cache", str(cache), "-o", str(run), "--accumulate", "2", "--warmup", "1",
                    "--steps", "2", "--propagation", "1.0", "--chain-steps", "2", "5", "--init",
                    str(EXAMPLE_IMAGE.parents[1] / "weights" / "litemedsam_click_decoder.pth")]) == 0
    rows = list(csv.DictReader(open(run / "log.csv")))
    assert sum(int(r["prop_runs"]) for r in rows) >= 3 and all(np.isfinite(float(r["loss"])) for r in rows)
    val = {r["which"] for r in csv.DictReader(open(run / "val.csv"))}
    assert {"prop-carried", "prop-official"} <= val


def test_export_averages_a_run_with_the_decoder_it_started_from(tmp_path, model):
    """``export --average-with`` writes weight x run + (1 - weight) x the given decoder file."""
    run, start = tmp_path / "run", tmp_path / "start.pth"
    run.mkdir()
    pe, md = model.prompt_encoder.state_dict(), model.mask_decoder.state_dict()
    shifted = {k: v + 1.0 if v.is_floating_point() else v for k, v in md.items()}
    torch.save({"prompt_encoder": pe, "mask_decoder": shifted, "optimizer": {}, "step": 5, "samples": 20,
                "wall_s": 1.0}, run / "last.pth")
    torch.save({**{f"prompt_encoder.{k}": v for k, v in pe.items()},
                **{f"mask_decoder.{k}": v for k, v in md.items()}}, start)
    out = tmp_path / "soup.pth"
    assert tc.main(["export", "--run", str(run), "-o", str(out), "--average-with", str(start),
                    "--average-weight", "0.25"]) == 0
    soup = torch.load(out, weights_only=True)
    key = next(k for k, v in md.items() if v.is_floating_point())
    assert torch.allclose(soup[f"mask_decoder.{key}"], md[key] + 0.25)
    assert torch.equal(soup[f"prompt_encoder.{next(iter(pe))}"], next(iter(pe.values())))
    bad = tmp_path / "bad.pth"
    torch.save({"prompt_encoder.x": torch.zeros(1)}, bad)
    with pytest.raises(LiteMedSAMError, match="not a click decoder"):
        tc.main(["export", "--run", str(run), "-o", str(tmp_path / "x.pth"), "--average-with", str(bad)])


def test_propagation_runs_keep_their_slices_within_the_gap():
    """Runs take every s-th slice with s x spacing <= max_gap_mm, and skip an axis whose
    slices are further apart than that (thick axial slices: runs along the other axes only)."""
    rng = np.random.default_rng(0)
    image = rng.normal(100, 20, size=(12, 40, 40)).astype(np.float32)
    label = np.zeros((12, 40, 40), dtype=np.int32)
    label[2:10, 8:30, 10:32] = 1
    runs = list(tc.sequences_of_case(image, label, (2.0, 0.5, 0.5), 12, rng, length=3, max_gap_mm=1.5))
    assert len(runs) == 12
    for u8s, labs, obj, kind in runs:
        axis, stride = int(kind.rstrip("0123456789").rstrip("sw")[-1]), int(kind.rsplit("s", 1)[1])
        assert axis in (1, 2) and 1 <= stride <= 3 and obj == 1 and len(u8s) == 3 and labs.shape == (3, 256, 256)
