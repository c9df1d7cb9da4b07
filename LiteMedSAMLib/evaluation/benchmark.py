"""``litemedsam benchmark``: our modes against the official 3D algorithm, on real volumes.

One command measures, on this machine and with fixed threads:

- the **reference**: :func:`~LiteMedSAMLib.evaluation.reference.official_infer_3d`, a literal copy of
  ``CVPR24_LiteMedSAM_infer.py``'s 3D sweep (eager PyTorch, every slice encoded again for
  every box, no cache), called once per box so that each box is the script's first box;
- each **mode** of :data:`LiteMedSAMLib.backends.MODES` (``torch``, ``exact``, ``fast``)
  through :func:`~LiteMedSAMLib.backends.make_predictor` and
  :func:`~LiteMedSAMLib.propagation.segment_volume`.

Each (case, mode) runs in its own child process, so that its peak resident memory is its
own. Per run: wall time of the 3D sweep, ms per slice in the encoder and the decoder,
encoder runs, peak RSS, DSC of its label map against the reference's, the speed-up; for the
modes also first-slice latency (new volume, first prompt) and re-prompt latency (same
slice, new box). Once per benchmark: GFLOP per slice (counted with PyTorch's FLOP
counter) and the measured float32 matmul peak, so each mode's achieved GFLOP/s is put
against it. Writes JSON and a PNG plot.

Cases (what each one is, honestly):

- ``mr-example``: the shipped brain MR (158 x 170 x 28, real) and its three boxes.
- ``mr-512x512x300``: the same MR resampled to 512 x 512 in-plane and 300 slices (linear
  interpolation): a *size* case, not a real CT; one box through 50 slices (the
  ``--quick`` run uses 10). It also gives the peak memory of a 512 x 512 x 300 volume.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REFERENCE = "reference"


# ----------------------------------------------------------------------------- cases
def make_case(name: str, quick: bool = False):
    """``(volume [z, y, x], preset, boxes, description)`` of a benchmark case."""
    import SimpleITK as sitk

    from ..example import EXAMPLE_BOXES, EXAMPLE_IMAGE, EXAMPLE_PRESET

    image = sitk.ReadImage(str(EXAMPLE_IMAGE))
    if name == "mr-example":
        return (sitk.GetArrayFromImage(image), EXAMPLE_PRESET, list(EXAMPLE_BOXES.values()),
                "shipped brain MR 158x170x28 (real), its 3 boxes")
    if name == "mr-512x512x300":
        size = (512, 512, 300)
        spacing = [image.GetSpacing()[i] * image.GetSize()[i] / size[i] for i in range(3)]
        resampled = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(),
                                  spacing, image.GetDirection(), 0.0, image.GetPixelID())
        volume = sitk.GetArrayFromImage(resampled)
        x0, y0, _, x1, y1, _ = EXAMPLE_BOXES["cerebellum and brain stem"]
        sx, sy = 512 / image.GetSize()[0], 512 / image.GetSize()[1]
        n = 10 if quick else 50
        box = (int(x0 * sx), int(y0 * sy), 100, int(x1 * sx), int(y1 * sy), 100 + n - 1)
        return (volume, EXAMPLE_PRESET, [box],
                f"size case: the brain MR resampled to 512x512x300 (not a real CT), 1 box, {n} slices")
    raise ValueError(f"unknown case {name!r}")


CASES = ("mr-example", "mr-512x512x300")


def label_map(masks: list[np.ndarray]) -> np.ndarray:
    """Masks to one label map, later boxes overwriting earlier ones, as the official script."""
    segs = np.zeros(masks[0].shape, np.uint8)
    for idx, mask in enumerate(masks, start=1):
        segs[mask > 0] = idx
    return segs


def dsc_labels(a: np.ndarray, b: np.ndarray) -> float:
    """Mean DSC over the labels present in either map (1.0 when both are empty)."""
    labels = [v for v in np.union1d(np.unique(a), np.unique(b)) if v != 0]
    scores = []
    for v in labels:
        x, y = a == v, b == v
        total = int(x.sum()) + int(y.sum())
        scores.append(1.0 if total == 0 else 2.0 * int((x & y).sum()) / total)
    return float(np.mean(scores)) if scores else 1.0


# ----------------------------------------------------------------------------- timing
class Timed:
    """Wraps a callable, accumulating its wall time and call count."""

    def __init__(self, fn) -> None:
        self.fn, self.seconds, self.calls = fn, 0.0, 0

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1


class _TimedModel:
    """What :func:`official_infer_3d` needs of a model, with timed encoder and decoder."""

    def __init__(self, model) -> None:
        self.image_encoder = Timed(model.image_encoder)
        self.prompt_encoder = model.prompt_encoder
        self.mask_decoder = Timed(model.mask_decoder)


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB. Linux: ``VmHWM``, which starts afresh at
    exec (``ru_maxrss`` would keep the forking parent's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1024 if sys.platform != "darwin" else 1  # ru_maxrss is KiB on Linux, bytes on macOS
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def run_one(case: str, mode: str, quick: bool, threads: int, out_npz: str) -> dict:
    """Run one (case, mode) in this process; masks go to ``out_npz`` as a label map."""
    import torch

    torch.set_num_threads(threads)
    from ..registry import load_model

    volume, preset, boxes, _ = make_case(case, quick)
    model = load_model("litemedsam")
    result: dict = {"case": case, "mode": mode}
    start = time.perf_counter()
    if mode == REFERENCE:
        from ..preprocessing import intensity_mapping
        from .reference import official_infer_3d

        timed = _TimedModel(model)
        setup = time.perf_counter() - start
        start = time.perf_counter()
        mapping = intensity_mapping(volume, preset)  # the official pre_CT_MR normalisation (tested equal)
        img = mapping.apply(volume)
        # Each box as the official script's first box: it resizes the k-th box's neighbour mask
        # with value k (a quirk the library drops, see propagation.py), which would otherwise
        # make boxes 2, 3, ... differ for a reason that is not speed. Same work as one call.
        masks = [official_infer_3d(timed, img, np.array([(x0, y0, z0 - 1, x1, y1, z1 + 1)])) == 1
                 for x0, y0, z0, x1, y1, z1 in boxes]
        segs = label_map(masks)
        sweep = time.perf_counter() - start
        enc, dec = timed.image_encoder, timed.mask_decoder
        result["used_mode"] = REFERENCE
    else:
        from ..backends import make_predictor
        from ..propagation import middle_slice, segment_volume

        predictor = make_predictor(model, mode, threads=threads)
        enc, dec = Timed(predictor.encoder), Timed(predictor.decoder)
        predictor.encoder, predictor.decoder = enc, dec
        setup = time.perf_counter() - start
        predictor.set_volume(volume, preset=preset)
        start = time.perf_counter()
        masks = segment_volume(predictor, boxes, pipeline="official")
        sweep = time.perf_counter() - start
        segs = label_map(masks)
        # first slice of a new volume (encode + decode), then re-prompts on the encoded slice
        enc_s, enc_n, dec_s, dec_n = enc.seconds, enc.calls, dec.seconds, dec.calls
        x0, y0, z0, x1, y1, z1 = boxes[0]
        z = middle_slice(z0, z1)
        predictor.set_volume(volume, preset=preset)
        t = time.perf_counter()
        predictor.predict_slice(z, (x0, y0, x1, y1))
        result["first_slice_ms"] = 1000 * (time.perf_counter() - t)
        reprompts = []
        for k in range(1, 6):
            t = time.perf_counter()
            predictor.predict_slice(z, (x0 + k, y0 + k, x1 - k, y1 - k))
            reprompts.append(1000 * (time.perf_counter() - t))
        result["reprompt_ms"] = float(np.median(reprompts))
        enc.seconds, enc.calls, dec.seconds, dec.calls = enc_s, enc_n, dec_s, dec_n
        result["used_mode"] = predictor.mode
    np.savez_compressed(out_npz, segs=segs)
    result.update({
        "setup_s": setup, "sweep_s": sweep,
        "slices": int(sum(b[5] - b[2] + 1 for b in boxes)),
        "encoder_runs": enc.calls, "decoder_runs": dec.calls,
        "encoder_ms_per_slice": 1000 * enc.seconds / max(1, enc.calls),
        "decoder_ms_per_slice": 1000 * dec.seconds / max(1, dec.calls),
        "peak_rss_mb": peak_rss_mb(),
    })
    return result


# ----------------------------------------------------------------------------- machine
def flops_per_slice(model) -> dict:
    """GFLOP of one encoder run and one box decoder run (PyTorch's FLOP counter, 2 per MAC)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, model.image_size, model.image_size)
    flags = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)  # the counter's module tracker trips on parameters passed through
    try:
        with FlopCounterMode(display=False) as counter:
            emb = model.encode(x)
        encoder = counter.get_total_flops() / 1e9
        with FlopCounterMode(display=False) as counter:
            model.decode(emb, boxes=torch.tensor([[10.0, 10.0, 100.0, 100.0]]))
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
    return {"encoder_gflop": encoder, "decoder_gflop": counter.get_total_flops() / 1e9}


def matmul_peak(threads: int, n: int = 2048, repeats: int = 10) -> dict:
    """Measured GFLOP/s of a square float32 (and bfloat16) matmul in PyTorch: the machine's floor."""
    import torch

    torch.set_num_threads(threads)
    peaks = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t)
        peaks[f"matmul_{name}_gflops"] = 2 * n**3 / best / 1e9
    return peaks


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# ----------------------------------------------------------------------------- driver
def run_benchmark(output: Path, quick: bool = False, threads: int | None = None,
                  modes: list[str] | None = None, cases: list[str] | None = None, echo=print) -> dict:
    import torch

    from ..backends import MODES
    from ..registry import load_model

    threads = threads or os.cpu_count() or 1
    modes = modes or list(MODES)
    cases = cases or list(CASES)
    model = load_model("litemedsam")
    torch.set_num_threads(threads)
    machine = {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": threads,
               "torch": torch.__version__, "python": platform.python_version(),
               "load_average_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    try:
        import openvino

        machine["openvino"] = openvino.__version__
    except ImportError:
        machine["openvino"] = None
    machine.update(matmul_peak(threads))
    machine.update(flops_per_slice(model))
    floor = machine["encoder_gflop"] / machine["matmul_fp32_gflops"]
    machine["fp32_floor_s_per_slice"] = floor
    echo(f"{machine['cpu']}, {threads} threads; fp32 matmul {machine['matmul_fp32_gflops']:.0f} GFLOP/s, "
         f"bf16 {machine['matmul_bf16_gflops']:.0f}; encoder {machine['encoder_gflop']:.1f} GFLOP/slice, "
         f"decoder {machine['decoder_gflop']:.2f}; fp32 floor {floor:.2f} s/slice")
    for mode in modes:  # convert once here, so that the runs load the cached model
        from ..backends import make_backend

        t = time.perf_counter()
        used = make_backend(model, mode, threads)[2]
        echo(f"mode {mode}: backend ready in {time.perf_counter() - t:.1f} s ({used})")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            _, _, _, description = make_case(case, quick)
            echo(f"\n{case}: {description}")
            ref_segs = None
            for mode in [REFERENCE, *modes]:
                npz = str(Path(tmp) / f"{case}-{mode}.npz")
                cmd = [sys.executable, "-m", "LiteMedSAMLib.evaluation.benchmark", "--worker", case, mode,
                       str(threads), npz, "1" if quick else "0"]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    raise RuntimeError(f"benchmark run {case}/{mode} failed:\n{proc.stderr[-3000:]}")
                result = json.loads(proc.stdout.strip().splitlines()[-1])
                segs = np.load(npz)["segs"]
                if mode == REFERENCE:
                    ref_segs, ref_time = segs, result["sweep_s"]
                result["dsc_vs_reference"] = dsc_labels(segs, ref_segs)
                result["voxels_differing"] = int(np.count_nonzero(segs != ref_segs))
                result["speedup"] = ref_time / result["sweep_s"]
                result["s_per_slice"] = result["sweep_s"] / result["slices"]
                result["achieved_gflops"] = machine["encoder_gflop"] / (result["encoder_ms_per_slice"] / 1000)
                result["description"] = description
                runs.append(result)
                echo(format_row(result))
    machine["load_average_at_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    report = {"command": "litemedsam benchmark" + (" --quick" if quick else ""), "quick": quick,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine, "runs": runs}
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    plot(report, output.with_suffix(".png"))
    echo(f"\nWrote {output} and {output.with_suffix('.png')}")
    return report


HEADER = ("mode", "sweep s", "s/slice", "speed-up", "enc ms", "dec ms", "enc runs", "GFLOP/s",
          "DSC vs ref", "first ms", "re-prompt ms", "peak MB")


def format_row(r: dict) -> str:
    first = f"{r['first_slice_ms']:.0f}" if "first_slice_ms" in r else "-"
    reprompt = f"{r['reprompt_ms']:.0f}" if "reprompt_ms" in r else "-"
    mode = r["mode"] if r["used_mode"] == r["mode"] else f"{r['mode']}->{r['used_mode']}"
    return (f"  {mode:<10} {r['sweep_s']:8.1f} {r['s_per_slice']:7.2f} {r['speedup']:6.2f}x "
            f"{r['encoder_ms_per_slice']:7.0f} {r['decoder_ms_per_slice']:6.0f} {r['encoder_runs']:5d} "
            f"{r['achieved_gflops']:6.0f} {r['dsc_vs_reference']:8.4f} {first:>6} {reprompt:>6} "
            f"{r['peak_rss_mb']:7.0f}")


def markdown_table(report: dict) -> str:
    """The results as a Markdown table (for the README)."""
    lines = ["| case | mode | sweep s | s/slice | speed-up | encoder ms/slice | decoder ms/slice | "
             "GFLOP/s | DSC vs reference | first slice ms | re-prompt ms | peak RSS MB |",
             "| --- " * 12 + "|"]
    for r in report["runs"]:
        lines.append(f"| {r['case']} | {r['mode']} | {r['sweep_s']:.1f} | {r['s_per_slice']:.2f} | "
                     f"{r['speedup']:.2f}x | {r['encoder_ms_per_slice']:.0f} | {r['decoder_ms_per_slice']:.0f} | "
                     f"{r['achieved_gflops']:.0f} | {r['dsc_vs_reference']:.4f} | "
                     f"{r.get('first_slice_ms', float('nan')):.0f} | {r.get('reprompt_ms', float('nan')):.0f} | "
                     f"{r['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(dict.fromkeys(r["case"] for r in report["runs"]))
    fig, axes = plt.subplots(1, len(cases), figsize=(5.5 * len(cases), 4.2), squeeze=False)
    for ax, case in zip(axes[0], cases):
        rows = [r for r in report["runs"] if r["case"] == case]
        names = [r["mode"] for r in rows]
        values = [r["s_per_slice"] for r in rows]
        bars = ax.bar(names, values, color=["#888888"] + ["#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd"][:len(rows) - 1])
        for bar, r in zip(bars, rows):
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(),
                    f"{r['speedup']:.1f}x\nDSC {r['dsc_vs_reference']:.3f}", ha="center", va="bottom", fontsize=8)
        floor = report["machine"]["fp32_floor_s_per_slice"]
        ax.axhline(floor, color="k", ls="--", lw=0.8)
        ax.text(-0.45, floor, "fp32 matmul floor (encoder)", ha="left", va="top", fontsize=7)
        ax.set_title(f"{case}\n({rows[0]['slices']} box slices)", fontsize=9)
        ax.set_ylabel("seconds per box slice (3D sweep)")
        ax.set_ylim(0, max(values) * 1.3)
    m = report["machine"]
    fig.suptitle(f"LiteMedSAM 3D sweep vs the official script, {m['threads']} threads, {m['cpu']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main_worker(argv: list[str]) -> None:
    case, mode, threads, npz, quick = argv
    result = run_one(case, mode, quick == "1", int(threads), npz)
    print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        main_worker(sys.argv[2:])
