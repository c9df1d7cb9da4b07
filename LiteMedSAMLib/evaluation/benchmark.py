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

``--models`` adds rows for other registered models (the students) in the same modes, with
the same boxes and the official propagation: their DSC is against the reference (LiteMedSAM,
the official script) and ``vs litemedsam`` is their sweep's speed-up over LiteMedSAM's in
the same mode, the number a user choosing a model needs.

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
    """Mean DSC (:func:`~LiteMedSAMLib.evaluation.metrics.dice`) over the labels present in
    either map (1.0 when both are empty)."""
    from .metrics import dice

    labels = [v for v in np.union1d(np.unique(a), np.unique(b)) if v != 0]
    return float(np.mean([dice(a == v, b == v) for v in labels])) if labels else 1.0


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


DEFAULT_MODEL = "litemedsam"


def run_one(case: str, mode: str, quick: bool, threads: int, out_npz: str,
            model_name: str = DEFAULT_MODEL) -> dict:
    """Run one (case, mode, model) in this process; masks go to ``out_npz`` as a label map."""
    import torch

    torch.set_num_threads(threads)
    from ..registry import load_model

    volume, preset, boxes, _ = make_case(case, quick)
    model = load_model(DEFAULT_MODEL if mode == REFERENCE else model_name)
    result: dict = {"case": case, "mode": mode, "model": DEFAULT_MODEL if mode == REFERENCE else model_name}
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
                  modes: list[str] | None = None, cases: list[str] | None = None, echo=print,
                  models: list[str] | None = None) -> dict:
    import torch

    from ..backends import MODES
    from ..registry import load_model

    threads = threads or os.cpu_count() or 1
    modes = modes or list(MODES)
    cases = cases or list(CASES)
    models = [DEFAULT_MODEL] + [m for m in (models or []) if m != DEFAULT_MODEL]
    model = load_model(DEFAULT_MODEL)
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
    machine["gflop_per_model"] = {}
    for name in models:
        from ..backends import make_backend

        member = model if name == DEFAULT_MODEL else load_model(name)
        machine["gflop_per_model"][name] = flops_per_slice(member)
        for mode in modes:  # convert once here, so that the runs load the cached model
            t = time.perf_counter()
            used = make_backend(member, mode, threads)[2]
            echo(f"{name}, mode {mode}: backend ready in {time.perf_counter() - t:.1f} s ({used})")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            _, _, _, description = make_case(case, quick)
            echo(f"\n{case}: {description}")
            echo(format_header())
            ref_segs = None
            teacher_time: dict[str, float] = {}
            plan = [(REFERENCE, DEFAULT_MODEL)] + [(mode, name) for name in models for mode in modes]
            for mode, name in plan:
                npz = str(Path(tmp) / f"{case}-{mode}-{name}.npz")
                cmd = [sys.executable, "-m", "LiteMedSAMLib.evaluation.benchmark", "--worker", case, mode,
                       str(threads), npz, "1" if quick else "0", name]
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
                if name == DEFAULT_MODEL:
                    teacher_time[mode] = result["sweep_s"]
                elif mode in teacher_time:
                    result["speedup_vs_litemedsam"] = teacher_time[mode] / result["sweep_s"]
                result["s_per_slice"] = result["sweep_s"] / result["slices"]
                gflop = machine["gflop_per_model"][name]["encoder_gflop"]
                result["achieved_gflops"] = gflop / (result["encoder_ms_per_slice"] / 1000)
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


# (header, width, how a run's value is written); "-" where a run has no such value
COLUMNS = (
    ("mode", 18, lambda r: (r["mode"] if r["used_mode"] == r["mode"] else f"{r['mode']}->{r['used_mode']}")
     + ("" if r.get("model", DEFAULT_MODEL) == DEFAULT_MODEL else f" {r['model']}")),
    ("sweep s", 8, lambda r: f"{r['sweep_s']:.1f}"),
    ("s/slice", 8, lambda r: f"{r['s_per_slice']:.2f}"),
    ("speed-up", 8, lambda r: f"{r['speedup']:.2f}x"),
    ("vs litemedsam", 13, lambda r: f"{r['speedup_vs_litemedsam']:.2f}x"),
    ("enc ms", 7, lambda r: f"{r['encoder_ms_per_slice']:.0f}"),
    ("dec ms", 7, lambda r: f"{r['decoder_ms_per_slice']:.0f}"),
    ("enc runs", 8, lambda r: f"{r['encoder_runs']:d}"),
    ("GFLOP/s", 8, lambda r: f"{r['achieved_gflops']:.0f}"),
    ("DSC vs ref", 10, lambda r: f"{r['dsc_vs_reference']:.4f}"),
    ("first ms", 8, lambda r: f"{r['first_slice_ms']:.0f}"),
    ("re-prompt ms", 12, lambda r: f"{r['reprompt_ms']:.0f}"),
    ("peak MB", 8, lambda r: f"{r['peak_rss_mb']:.0f}"),
)


def _cells(r: dict) -> list[str]:
    """A run's values as text, "-" for those it does not have (the reference has no latency)."""
    cells = []
    for _, _, value in COLUMNS:
        try:
            cells.append(value(r))
        except (KeyError, TypeError, ValueError):
            cells.append("-")
    return cells


def format_header() -> str:
    """The header line of :func:`format_row`'s columns."""
    return "  " + " ".join(f"{name:<{w}}" if i == 0 else f"{name:>{w}}"
                           for i, (name, w, _) in enumerate(COLUMNS))


def format_row(r: dict) -> str:
    """One run as a text row under :func:`format_header`."""
    return "  " + " ".join(f"{cell:<{w}}" if i == 0 else f"{cell:>{w}}"
                           for i, (cell, (_, w, _)) in enumerate(zip(_cells(r), COLUMNS)))


def markdown_table(report: dict) -> str:
    """The results as a Markdown table (for the README); "-" where a run has no value."""
    headers = ["case"] + [name for name, _, _ in COLUMNS]
    lines = ["| " + " | ".join(headers) + " |", "| --- " * len(headers) + "|"]
    for r in report["runs"]:
        lines.append("| " + " | ".join([r["case"], *_cells(r)]) + " |")
    return "\n".join(lines)


MODE_COLORS = {REFERENCE: "#888888", "exact": "#1f77b4", "fast": "#2ca02c", "torch": "#ff7f0e"}


def benchmark_figure(report: dict):
    """The benchmark as a figure; the caller closes it.

    Top row, per case: the 3D sweep's seconds per *box slice* (what a user waits), annotated
    with the speed-up and the DSC against the reference. Bottom row: the encoder's seconds
    per *encoded* slice, against the one thing that bounds it, the encoder's GFLOP at the
    measured matmul peak (float32 for reference/exact/torch, bfloat16 for fast). The floors
    belong to the bottom row only: with several boxes the modes encode each slice once for
    all boxes, so a box slice can cost less than one encoder run. Each floor is drawn across
    the bars it bounds.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = report["machine"]
    cases = list(dict.fromkeys(r["case"] for r in report["runs"]))
    fig, axes = plt.subplots(2, len(cases), figsize=(5.6 * len(cases), 7.4), squeeze=False, layout="constrained")
    floors = {"fp32": m["encoder_gflop"] / m["matmul_fp32_gflops"],
              "bf16": m["encoder_gflop"] / m["matmul_bf16_gflops"]}
    for column, case in enumerate(cases):
        rows = [r for r in report["runs"] if r["case"] == case]
        names = [r["mode"] if r.get("model", DEFAULT_MODEL) == DEFAULT_MODEL else f"{r['mode']}\n{r['model']}"
                 for r in rows]
        colors = [MODE_COLORS.get(r["mode"], "#9467bd") for r in rows]
        top, bottom = axes[0][column], axes[1][column]
        sweep = [r["s_per_slice"] for r in rows]
        bars = top.bar(names, sweep, color=colors)
        top.bar_label(bars, [f"{r['speedup']:.1f}x\nDSC {r['dsc_vs_reference']:.3f}" for r in rows],
                      fontsize=8, padding=2)
        top.set_ylim(0, max(sweep) * 1.35)
        top.set_title(f"{case}: 3D sweep ({rows[0]['slices']} box slices)", fontsize=9)
        top.set_ylabel("s per box slice")
        encoder = [r["encoder_ms_per_slice"] / 1000 for r in rows]
        bars = bottom.bar(names, encoder, color=colors)
        bottom.bar_label(bars, [f"{v:.2f} s\n{r['encoder_runs']} runs" for v, r in zip(encoder, rows)],
                         fontsize=8, padding=2)
        for bar, r in zip(bars, rows):  # each bar's own floor, across that bar only
            precision = "bf16" if r["mode"] == "fast" else "fp32"
            gflop = m.get("gflop_per_model", {}).get(r.get("model", DEFAULT_MODEL), {}).get("encoder_gflop")
            floor = floors[precision] if gflop is None else gflop / m[f"matmul_{precision}_gflops"]
            bottom.hlines(floor, bar.get_x(), bar.get_x() + bar.get_width(), color="k",
                          ls="--" if precision == "fp32" else ":", lw=1.2,
                          label=f"{precision} matmul floor {floor:.2f} s"
                                + (" (fast mode)" if precision == "bf16" else "")
                                + ("" if gflop is None or r.get("model", DEFAULT_MODEL) == DEFAULT_MODEL
                                   else f", {r['model']}"))
        bottom.set_ylim(0, max(encoder) * 1.35)
        bottom.set_title(f"{case}: encoder, per encoded slice", fontsize=9)
        bottom.set_ylabel("s per encoder run")
    handles, labels = axes[1][0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    fig.legend(list(unique.values()), list(unique), loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(f"LiteMedSAM 3D sweep vs the official script, {m['threads']} threads, {m['cpu']}", fontsize=9)
    return fig


def plot(report: dict, path: Path) -> None:
    """Write :func:`benchmark_figure` as a PNG."""
    import matplotlib.pyplot as plt

    fig = benchmark_figure(report)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main_worker(argv: list[str]) -> None:
    case, mode, threads, npz, quick, *model = argv
    result = run_one(case, mode, quick == "1", int(threads), npz, *model)
    print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        main_worker(sys.argv[2:])
