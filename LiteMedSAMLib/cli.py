"""The litemedsam command line: argument parsing and printing around the library.

Every computation lives in the library (segmentation, imageio, evaluation, registry); this
module only turns arguments into calls and results into text.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import LiteMedSAMError

log = logging.getLogger("LiteMedSAMLib")

EXAMPLES = """examples:
  litemedsam segment ct.nii.gz --box 120 90 40 210 180 75 --name liver -o liver.seg.nrrd
  litemedsam segment dicom_folder/ --roi tumor.mrk.json --preset ct -o tumor.nii.gz
  litemedsam segment ct.nii.gz --box 120 90 40 210 180 75 --point 150 130 60 -o liver.seg.nrrd
  litemedsam evaluate liver.seg.nrrd liver_truth.nii.gz --json
  litemedsam evaluate-clicks ct.nii.gz organs.nii.gz --clicks 5 --json
  litemedsam evaluate-suite --pipeline default -o output/suite.json
  litemedsam models
  litemedsam demo -o output/
"""


# ------------------------------------------------------------------------------ progress
class ProgressBar:
    """A dependency-free text progress bar on stderr (full redraw on a terminal, 10% steps else).

    The rate counts from the ``(0, total)`` call that segmentation makes when it starts work,
    so the one-off model conversion before it does not inflate the seconds per slice."""

    def __init__(self, label: str, enabled: bool = True, stream=sys.stderr) -> None:
        self.label, self.enabled, self.stream = label, enabled, stream
        self.start = time.perf_counter()
        self.last_decile = -1

    def __call__(self, done: int, total: int) -> None:
        if done == 0:  # the work starts now: model loading and conversion are not in the rate
            self.start = time.perf_counter()
        if not self.enabled or total <= 0 or (done == 0 and not self.stream.isatty()):
            return
        elapsed = time.perf_counter() - self.start
        rate = f"{elapsed / done:.2f} s/slice" if done else ""
        if self.stream.isatty():
            filled = int(30 * done / total)
            self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] "
                              f"{done}/{total} slices {rate}")
            if done == total:
                self.stream.write("\n")
        elif done * 10 // total > self.last_decile or done == total:
            self.last_decile = done * 10 // total
            self.stream.write(f"{self.label}: {done}/{total} slices {rate}\n")
        self.stream.flush()


# ------------------------------------------------------------------------------ boxes
def _boxes_from_args(args: argparse.Namespace, image, is_2d: bool):
    """All boxes of the command line as ``(name, box)`` in order: --box, --box-mm, --roi, --box2d.

    An ROI that spans a single slice, and every ``--box2d``, is a 2D start (:class:`SliceBox`):
    swept from its slice until the object ends."""
    from .boxes import Box3D, SliceBox, box_from_physical_corners, box_from_physical_extent, read_roi_file, roi_start

    found = []
    for numbers in args.box or []:
        if len(numbers) == 4:
            x0, y0, x1, y1 = numbers
            z = 0 if is_2d else args.slice
            if z is None:
                raise LiteMedSAMError("a 4-number --box (x0 y0 x1 y1) needs a 2D image or --slice; "
                                      "give 6 numbers (x0 y0 z0 x1 y1 z1) for a 3D box")
            numbers = [x0, y0, z, x1, y1, z]
        elif len(numbers) != 6:
            raise LiteMedSAMError(f"--box takes 6 numbers (x0 y0 z0 x1 y1 z1) or 4 for a 2D box, "
                                  f"got {len(numbers)}")
        elif is_2d and (numbers[2] != 0 or numbers[5] != 0):
            raise LiteMedSAMError("the image is 2D: give --box x0 y0 x1 y1")
        found.append((None, Box3D(*numbers)))
    for numbers in args.box_mm or []:
        if len(numbers) != 6:
            raise LiteMedSAMError("--box-mm takes 6 numbers: two opposite corners x y z x y z in LPS mm")
        corners = np.array([numbers[:3], numbers[3:]])
        found.append((None, box_from_physical_extent(corners.min(0), corners.max(0), image)))
    for roi_path in args.roi or []:
        for roi in read_roi_file(roi_path):
            box = box_from_physical_corners(roi.corners_lps, image)
            found.append((roi.name, roi_start(box) if not is_2d and args.slice is None else box))
    for numbers in getattr(args, "box2d", None) or []:
        if is_2d:
            raise LiteMedSAMError("--box2d starts a 3D sweep; on a 2D image give --box x0 y0 x1 y1")
        if args.slice is not None:
            raise LiteMedSAMError("--box2d sweeps from its slice until the object ends; it cannot be "
                                  "combined with --slice (use --box x0 y0 x1 y1 --slice Z for one slice)")
        z, x0, y0, x1, y1 = numbers
        found.append((None, SliceBox(z, x0, y0, x1, y1)))
    if not found:
        raise LiteMedSAMError("give at least one box: --box, --box-mm, --roi or --box2d")
    names = list(args.name or [])
    if names and len(names) != len(found):
        raise LiteMedSAMError(f"{len(names)} --name given for {len(found)} boxes; give one per box or none")
    named = []
    for i, (roi_name, box) in enumerate(found):
        named.append((names[i] if names else roi_name or f"box {i + 1}", box))
    return named


def _points_from_args(args: argparse.Namespace, is_2d: bool) -> list[tuple[float, float, float, bool]]:
    """``--point`` and ``--background-point`` as ``(x, y, z, positive)``, object points first."""
    points = []
    for option, positive in (("point", True), ("background_point", False)):
        for value in getattr(args, option, None) or []:
            if is_2d and len(value) == 2:
                value = [*value, 0.0]
            if len(value) != 3 or (is_2d and value[2] != 0):
                raise LiteMedSAMError(f"a point is {'X Y' if is_2d else 'X Y Z'} (voxel indices), got "
                                      f"{' '.join(f'{v:g}' for v in value)}")
            points.append((value[0], value[1], value[2], positive))
    return points


def _preset_text(requested: str, used: str) -> str:
    """``"preset mr"``, or what ``auto`` chose: ``"preset none (auto)"``."""
    if used == "window":
        return "custom window"
    return f"preset {used}" + (" (auto)" if requested == "auto" else "")


# ------------------------------------------------------------------------------ segment
def _check_output(output: Path, inputs: Sequence[Path], overwrite: bool, check_format=None) -> None:
    """Everything about an output path that can fail, before any work: a suffix its writer
    knows (``check_format``, default the segmentation writer's), not an input file, not an
    existing file unless ``overwrite``."""
    from .imageio import output_kind

    (check_format or output_kind)(output)
    for source in inputs:
        if source.exists() and output.resolve() == source.resolve():
            raise LiteMedSAMError(f"the output {output} is an input file; choose another output path")
    if output.exists() and not overwrite:
        raise LiteMedSAMError(f"{output} exists; pass --overwrite to replace it")


def cmd_segment(args: argparse.Namespace) -> int:
    from .imageio import DEFAULT_COLORS, check_image, read_image, unique_names, write_segmentation
    from .segmentation import segment_image

    output = Path(args.output)
    inputs = [Path(args.image), *map(Path, args.roi or [])]
    _check_output(output, inputs, args.overwrite)
    if args.overlay:
        from .overlay import check_picture_path

        _check_output(Path(args.overlay), inputs, args.overwrite, check_picture_path)
    image = read_image(args.image)
    info = check_image(image)
    named = _boxes_from_args(args, image, info.dimension == 2)
    names = unique_names([n for n, _ in named])
    window = tuple(args.window) if args.window else None
    points = _points_from_args(args, info.dimension == 2)
    start = time.perf_counter()
    masks, predictor = segment_image(
        image, [b for _, b in named], model_name=args.model, weights=args.weights,
        preset=args.preset, window=window, slice_index=args.slice,
        progress=ProgressBar("Segmenting", enabled=not args.quiet), mode=args.mode, threads=args.threads,
        points=points, pipeline=args.pipeline)
    elapsed = time.perf_counter() - start
    warning = write_segmentation(output, masks, image, names)
    if warning:
        log.warning(warning)
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
    print(f"Wrote {output} ({len(masks)} segment(s), {elapsed:.1f} s, "
          f"{predictor.encoder_runs} slice(s) encoded, {predictor.mode} mode, {args.pipeline} pipeline, "
          f"{_preset_text(args.preset, predictor.mapping.kind)})")
    for name, mask in zip(names, masks):
        print(f"  {name}: {int(mask.sum())} voxels, {mask.sum() * voxel_ml:.2f} mL")
        if not mask.any():
            log.warning("%s: the result is empty; the box may be too small (a few pixels) or miss the object", name)
    if args.overlay:
        from .overlay import radiological_flips, save_overlay
        from .propagation import middle_slice

        boxes = [b for _, b in named]
        first = boxes[0]
        z = args.slice if args.slice is not None else getattr(first, "z", None)
        z = middle_slice(first.z0, first.z1) if z is None else z
        z = min(max(z, 0), predictor.shape[0] - 1)
        slices = [m if m.ndim == 2 else m[z] for m in masks]
        flips = radiological_flips(image.GetDirection()) if info.dimension == 3 else (False, False)
        save_overlay(args.overlay, predictor.slice_uint8(z), slices, names,
                     [DEFAULT_COLORS[i % len(DEFAULT_COLORS)] for i in range(len(names))],
                     [b.box2d for b in boxes], title=f"LiteMedSAM, slice {z}",
                     flip_rows=flips[0], flip_cols=flips[1],
                     direction=image.GetDirection() if info.dimension == 3 else None)
        print(f"Wrote {args.overlay}")
    return 0


# ------------------------------------------------------------------------------ batch
def _segment_options(args: argparse.Namespace) -> dict:
    """Pipeline options of the command line that ``segment_image`` takes beyond the batch's own
    (e.g. ``pipeline``), passed through unchanged."""
    import inspect

    from .segmentation import segment_image

    accepted = inspect.signature(segment_image).parameters
    return {name: getattr(args, name) for name in ("pipeline",)
            if name in accepted and getattr(args, name, None) is not None}


def cmd_batch(args: argparse.Namespace) -> int:
    from .batch import BatchOptions, run_batch

    options = BatchOptions(model=args.model, weights=args.weights, mode=args.mode, preset=args.preset,
                           window=tuple(args.window) if args.window else None, threads=args.threads,
                           segment_options=_segment_options(args))
    show = not args.quiet
    slices = ProgressBar("  slices", enabled=show and sys.stderr.isatty())

    def on_case(done: int, total: int, row) -> None:
        slices.start, slices.last_decile = time.perf_counter(), -1
        if show:
            what = row.error if row.status == "failed" else f"{row.seconds} s"
            filled = int(20 * done / total)
            print(f"[{'#' * filled}{'.' * (20 - filled)}] {done}/{total} cases: {row.output} {row.status} ({what})",
                  file=sys.stderr, flush=True)

    report = run_batch(args.manifest, args.output, options, workers=args.workers, scheduler=args.scheduler,
                       force=args.force, on_plan=lambda plan: print(f"Batch: {plan}", file=sys.stderr),
                       on_case=on_case, slice_progress=slices)
    for note in report.notes:
        print(f"note: {note}")
    counted = ", ".join(f"{report.count(s)} {s}" for s in ("done", "skipped", "failed", "not run") if report.count(s))
    rate = report.count("done") / (report.seconds / 60) if report.seconds > 0 else 0.0
    print(f"{len(report.rows)} case(s): {counted} in {report.seconds:.1f} s ({rate:.2f} cases/min done); "
          f"summary: {report.summary_path}")
    for row in report.rows:
        if row.status == "failed":
            print(f"  failed: {row.output}: {row.error}")
    if report.interrupted:
        print("litemedsam: stopped by Ctrl-C; re-run the same command to continue", file=sys.stderr)
    return report.exit_status


# ------------------------------------------------------------------------------ evaluate
def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation.metrics import evaluate_files

    report = evaluate_files(args.prediction, args.ground_truth, args.tolerance, pairs=getattr(args, "pair", None))
    for what, labels in (("prediction", report["unmatched_prediction"]),
                         ("ground-truth", report["unmatched_ground_truth"])):
        if labels:
            log.warning(f"{what} label(s) {', '.join(map(str, labels))} have no counterpart "
                        f"(paired by {report['paired_by']}); not scored")
    if not report["labels"]:
        raise LiteMedSAMError(f"no prediction segment pairs with a ground-truth label (by {report['paired_by']}); "
                              "name the segments as the ground truth does, or give --pair PRED TRUTH")
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    nsd = f"NSD@{args.tolerance:g}mm"
    rows = [(label, r["prediction"], r["prediction_name"] or r["name"] or "", f"{r['dsc']:.4f}", f"{r['nsd']:.4f}")
            for label, r in report["labels"].items()]
    rows.append(("mean", "", f"over {report['mean']['over']} compared", f"{report['mean']['dsc']:.4f}",
                 f"{report['mean']['nsd']:.4f}"))
    print(f"Paired by {report['paired_by']}:")
    print(text_table(("label", "prediction", "name", "DSC", nsd), rows))
    return 0


# ------------------------------------------------------------------------------ evaluate-clicks
def cmd_evaluate_clicks(args: argparse.Namespace) -> int:
    def show(label: int, step) -> None:
        if not args.quiet and not args.json:
            what = "box" if step.click is None else (
                f"{'+' if step.click.positive else '-'} {'scribble through' if args.scribbles else 'click at'} "
                f"x={step.click.x} y={step.click.y} z={step.click.z}")
            print(f"label {label}: {what}: DSC {step.dsc:.4f} NSD {step.nsd:.4f} "
                  f"({step.changed_slices} slices changed)", file=sys.stderr)

    from .evaluation.clicks import evaluate_clicks_files

    report = evaluate_clicks_files(args.image, args.ground_truth, clicks=args.clicks, labels=args.label,
                                   model_name=args.model, weights=args.weights, preset=args.preset,
                                   window=args.window, mode=args.mode, threads=args.threads,
                                   tolerance_mm=args.tolerance, correction=args.correction,
                                   mask_prompt=not args.no_mask_prompt, on_step=show,
                                   pipeline=args.pipeline, edge_cut=not args.no_edge_cut,
                                   scribbles=args.scribbles)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['mode']} mode, {_preset_text(args.preset, report['preset'])}, "
          f"{report['correction']} correction")
    steps = ["box"] + [f"+{i}" for i in range(1, args.clicks + 1)]
    for key, name in (("dsc", "DSC"), ("nsd", f"NSD@{args.tolerance:g}mm")):
        print(f"{name:<12}" + "".join(f"{s:>8}" for s in steps))
        for label, rows in report["labels"].items():
            values = [rows[min(i, len(rows) - 1)][key] for i in range(len(steps))]
            print(f"{'label ' + label:<12}" + "".join(f"{v:8.4f}" for v in values))
        print(f"{'mean':<12}" + "".join(f"{v:8.4f}" for v in report["mean"][key]))
    auc = report["auc"]["mean"]
    print(f"correction {report['correction']}: DSC_AUC {auc['dsc_auc']:.4f} NSD_AUC {auc['nsd_auc']:.4f} "
          f"(mean over labels; area under the click steps, at most {max(args.clicks - 1, 0)})")
    from .evaluation.statistics import PairedDifference

    for k, step in enumerate(report["click_steps"], start=1):
        print(f"click {k} against the step before it, DSC: {PairedDifference(**step).describe('labels')}")
    return 0


# ------------------------------------------------------------------------------ evaluate-suite
def _check_report_path(output: Path) -> None:
    """Before a long run (the suite, the benchmark), make sure its report can be written at
    ``output`` (and the picture beside it): its folder created and writable, ``output`` not a
    folder. Otherwise the run would end, minutes or hours later, in an error that loses it."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LiteMedSAMError(f"cannot create the folder for {output}: {exc.strerror or exc}") from None
    if output.is_dir():
        raise LiteMedSAMError(f"{output} is a folder; give the report a file name such as {output / 'report.json'}")
    if not os.access(output.parent, os.W_OK):
        raise LiteMedSAMError(f"cannot write the report into {output.parent}: the folder is not writable")


def cmd_evaluate_suite(args: argparse.Namespace) -> int:
    """Pipelines side by side on the labelled suite (tools/fetch_public_data.py); table, JSON, PNG."""
    from .evaluation.suite import format_report, plot_report, run_suite

    def say(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr)

    if args.output:
        _check_report_path(Path(args.output))
    report = run_suite(args.data, pipelines=args.pipeline or [], split=args.split,
                       datasets=args.dataset, start=args.start, model_name=args.model,
                       weights=args.weights, mode=args.mode, threads=args.threads,
                       max_structures=args.max_structures, only=args.structure,
                       max_slices=args.max_slices, tolerance_mm=args.tolerance,
                       compare_models=args.compare_model or [], log=say)
    print(format_report(report))
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n")
        plot_report(report, out.with_suffix(".png"))
        print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


# ------------------------------------------------------------------------------ models
def cmd_models(args: argparse.Namespace) -> int:
    from .registry import describe_models

    rows = describe_models()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(text_table(("name", "title", "license", "corrections", "weights"),
                     [(row["name"] + (" (default)" if row["default"] else ""), row["title"], row["license"],
                       row["correction"] + (" (click decoder)" if row["click_decoder"] else ""),
                       row["weights"] or f"not installed ({row['install'] or 'see the manifest'})")
                      for row in rows]))
    return 0


def text_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns under a header row, as wide as their widest cell (the last
    column is not padded)."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ demo
def cmd_demo(args: argparse.Namespace) -> int:
    """Segment the shipped example (three structures of a brain MR) and score it."""
    from .example import EXAMPLE_BOXES, EXAMPLE_IMAGE, EXAMPLE_LABEL, EXAMPLE_PRESET

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise LiteMedSAMError(f"{out} is a file; -o names the folder for demo.seg.nrrd and demo_overlay.png")
    seg_path, png_path = out / "demo.seg.nrrd", out / "demo_overlay.png"
    box_args = [list(b) for b in EXAMPLE_BOXES.values()]
    segment_args = argparse.Namespace(
        image=str(EXAMPLE_IMAGE), output=str(seg_path), box=box_args, box_mm=None, roi=None,
        name=list(EXAMPLE_BOXES), model=args.model, weights=args.weights, preset=EXAMPLE_PRESET,
        window=None, slice=None, overlay=str(png_path), quiet=args.quiet, overwrite=True,
        mode=args.mode, threads=args.threads, pipeline=args.pipeline)
    print(f"Demo: {EXAMPLE_IMAGE.name}, {len(box_args)} boxes: {', '.join(EXAMPLE_BOXES)}")
    cmd_segment(segment_args)
    print(f"Agreement with the reference label {EXAMPLE_LABEL.name}:")
    return cmd_evaluate(argparse.Namespace(prediction=str(seg_path), ground_truth=str(EXAMPLE_LABEL),
                                           tolerance=2.0, pair=None, json=False))


# ------------------------------------------------------------------------------ benchmark
def cmd_benchmark(args: argparse.Namespace) -> int:
    """Time the official 3D algorithm and each mode on the benchmark cases; JSON + PNG."""
    from .evaluation.benchmark import markdown_table, run_benchmark

    _check_report_path(Path(args.output))
    report = run_benchmark(Path(args.output), quick=args.quick, threads=args.threads,
                           modes=args.modes, cases=args.cases, models=args.models)
    print()
    print(markdown_table(report))
    return 0


# ------------------------------------------------------------------------------ parser
class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks and appends each option's default to its help, unless
    the default is "nothing" (None, False) or the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or "(default" in text or default in (None, False, argparse.SUPPRESS) or default == []
                or not action.option_strings):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else "%(default)s"
        return f"{text} (default: {shown})"


def _pipeline_name(value: str) -> str:
    """argparse type for --pipeline: checked at parse time, kept as its name."""
    from .pipeline import get_pipeline

    try:
        return get_pipeline(value).name
    except LiteMedSAMError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    from .backends import DEFAULT_MODE, MODES
    from .pipeline import DEFAULT_PIPELINE, PIPELINE_HELP
    from .preprocessing import PRESET_HELP, PRESETS

    parser = argparse.ArgumentParser(prog="litemedsam", description=__doc__.split("\n")[0],
                                     epilog=EXAMPLES, formatter_class=HelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help="one of the commands below; 'litemedsam COMMAND --help' for its options")

    def add_command(name: str, **kwargs) -> argparse.ArgumentParser:
        return sub.add_parser(name, formatter_class=HelpFormatter, **kwargs)

    def model_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", default=None,
                       help="registered model name (default: the default of 'litemedsam models')")
        p.add_argument("--weights", default=None, metavar="FILE",
                       help="explicit weights file for the model (default: the registered, checksummed one)")
        p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
        p.add_argument("--mode", default=DEFAULT_MODE, choices=list(MODES),
                       help="inference backend: exact (OpenVINO float32, official masks), "
                            "fast (OpenVINO bfloat16, small mask differences), torch (eager PyTorch)")

    def intensity_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--preset", default="auto", choices=PRESETS, help=f"intensity preset; {PRESET_HELP}")
        p.add_argument("--window", nargs=2, type=float, metavar=("WIDTH", "LEVEL"),
                       help="custom CT window in HU (overrides --preset)")

    def pipeline_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--pipeline", default=DEFAULT_PIPELINE, type=_pipeline_name, metavar="PIPELINE",
                       help=PIPELINE_HELP)

    seg = add_command("segment", help="segment an image inside boxes",
                      description="Segment IMAGE inside each box; 3D boxes are swept from their middle slice.")
    seg.add_argument("image", help="image file (nrrd, nii.gz, mha, png, ...) or a DICOM series folder")
    seg.add_argument("--box", nargs="+", type=float, action="append", metavar="N",
                     help="inclusive voxel box x0 y0 z0 x1 y1 z1 (or x0 y0 x1 y1 on a 2D image / with --slice); "
                          "repeatable")
    seg.add_argument("--box-mm", nargs=6, type=float, action="append", metavar="MM",
                     help="box by two opposite corners x y z x y z in physical LPS millimetres; repeatable")
    seg.add_argument("--roi", action="append", metavar="FILE.mrk.json",
                     help="Slicer markups ROI file (any orientation, LPS or RAS); repeatable")
    seg.add_argument("--box2d", nargs=5, type=float, action="append", metavar=("Z", "X0", "Y0", "X1", "Y1"),
                     help="2D box on slice Z (inclusive voxel indices): segments the object there and "
                          "sweeps up and down until it ends; repeatable")
    seg.add_argument("--name", action="append",
                     help="segment name, one per box in order (--box, --box-mm, --roi, --box2d) (default: the "
                          "ROI's name, else 'box N')")
    seg.add_argument("--point", nargs="+", type=float, action="append", metavar="N",
                     help="object point X Y Z (voxel indices; X Y for 2D) to correct the box that holds it; "
                          "repeatable")
    seg.add_argument("--background-point", nargs="+", type=float, action="append", metavar="N",
                     help="background point X Y Z: where the box's result covers too much; repeatable")
    seg.add_argument("-o", "--output", required=True,
                     help="output .seg.nrrd (Slicer segmentation) or labelmap (.nii.gz, .nrrd, .mha)")
    intensity_options(seg)
    seg.add_argument("--slice", type=int, default=None, help="segment only this slice (2D prompt)")
    seg.add_argument("--overlay", default=None, metavar="PNG", help="also write a picture of the middle "
                     "(or --slice) slice with the result")
    seg.add_argument("--overwrite", action="store_true", help="replace an existing output file (and --overlay picture)")
    model_options(seg)
    pipeline_option(seg)
    seg.set_defaults(func=cmd_segment)

    batch = add_command(
        "batch", help="segment a cohort listed in a CSV manifest; resumable",
        description="Segment every image of MANIFEST (CSV: image, and per row one of box, box_mm, roi; "
                    "optional name, preset, model; rows of one image are one case) into "
                    "OUTDIR/<image stem>.seg.nrrd, with OUTDIR/summary.csv. A re-run skips cases whose "
                    "output exists and whose inputs and options are unchanged. Exit status 1 when a case failed.")
    batch.add_argument("manifest", help="CSV file: image, and one of box, box_mm, roi per row")
    batch.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the outputs and summary.csv")
    batch.add_argument("--preset", default="auto", choices=PRESETS, help="for rows without a preset; " + PRESET_HELP)
    batch.add_argument("--window", nargs=2, type=float, metavar=("WIDTH", "LEVEL"), help="custom CT window")
    batch.add_argument("--force", action="store_true", help="redo every case, replacing its output")
    where = batch.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=1,
                       help="processes on this machine, each loading the model once")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="run on this Dask distributed scheduler (e.g. tcp://host:8786); paths must be "
                            "the same on its workers")
    pipeline_option(batch)
    model_options(batch)
    batch.set_defaults(func=cmd_batch)

    ev = add_command("evaluate", help="DSC and NSD of a prediction against a ground truth",
                     description="DSC and NSD of each prediction segment against its ground-truth label: "
                                 "paired by segment name when both files name them (.seg.nrrd), else by "
                                 "label value (segment N of a .seg.nrrd is label N). Unpaired ones are "
                                 "reported and left out of the mean.")
    ev.add_argument("prediction", help="predicted labelmap or .seg.nrrd")
    ev.add_argument("ground_truth", help="ground-truth labelmap or .seg.nrrd on the same voxel grid")
    ev.add_argument("--tolerance", type=float, default=2.0, help="NSD tolerance in mm")
    ev.add_argument("--pair", nargs=2, type=int, action="append", metavar=("PRED", "TRUTH"),
                    help="score prediction label PRED against ground-truth label TRUTH instead of the "
                         "automatic pairing; repeatable")
    ev.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ev.set_defaults(func=cmd_evaluate)

    clk = add_command("evaluate-clicks", help="box, then simulated correction clicks: DSC/NSD after each",
                      description="The CVPR 2025 interactive protocol: for each label of GROUND_TRUTH, a box "
                                  "from its bounding box, then clicks at the centre of the largest error "
                                  "region, each followed by refinement; prints DSC and NSD after each step.")
    clk.add_argument("image", help="image file or DICOM series folder (3D)")
    clk.add_argument("ground_truth", help="label volume (labelmap or .seg.nrrd) on the image's voxel grid")
    clk.add_argument("--clicks", type=int, default=5, help="clicks after the box")
    clk.add_argument("--label", type=int, nargs="+", default=None, help="labels to evaluate (default: all)")
    intensity_options(clk)
    clk.add_argument("--tolerance", type=float, default=2.0, help="NSD tolerance in mm")
    clk.add_argument("--correction", default=None, choices=["trained", "trained-edit", "edit", "replace"],
                     help="trained: the model's click decoder re-prompts the slice; trained-edit: the edit "
                          "with the click decoder's output as its first candidate; edit: each click edits "
                          "the mask near it; replace: SAM-style re-prompt of the box-trained decoder "
                          "(default: the strategy the model's manifest names when its click decoder is "
                          "installed, trained-edit for litemedsam; else edit)")
    clk.add_argument("--no-mask-prompt", action="store_true", help="do not feed the box result's logits back")
    clk.add_argument("--no-edge-cut", action="store_true",
                     help="negative clicks of the edit corrections take away only what the model leaves out, "
                          "not also the part the image's edges cut off around them (the edit before 2026-12-06)")
    clk.add_argument("--scribbles", action="store_true",
                     help="give each interaction as a stroke through the click, along the error region under "
                          "it on its slice, instead of the click")
    clk.add_argument("--json", action="store_true", help="print JSON instead of tables")
    model_options(clk)
    pipeline_option(clk)
    clk.set_defaults(func=cmd_evaluate_clicks)

    suite = add_command("evaluate-suite", help="pipelines side by side on the labelled public suite",
                        description="Segment every selected structure of the suite (fetched by "
                                    "tools/fetch_public_data.py) with one box each, once per pipeline "
                                    "(the official pipeline always too), and print DSC and NSD per "
                                    "dataset and structure, the means and the time.")
    suite.add_argument("--data", default=None,
                       help="suite folder (default: $LITEMEDSAM_DATA_DIR or ~/.cache/litemedsam-data)")
    suite.add_argument("--pipeline", action="append", metavar="NAME",
                       help="pipeline to compare with the official one (e.g. default, official+window); repeatable")
    suite.add_argument("--split", default="test", choices=["test", "train", "all"], help="cases to run")
    suite.add_argument("--dataset", action="append", metavar="NAME", help="only this dataset or case id; repeatable")
    suite.add_argument("--start", default="box3d", choices=["box3d", "box2d"],
                       help="box3d: the label's 3D bounding box; box2d: its 2D box on its middle slice")
    suite.add_argument("--max-structures", type=int, default=12, metavar="N",
                       help="structures per 3D case, typical ones first, then the most compact")
    suite.add_argument("--structure", action="append", metavar="NAME", help="only structures of this name; repeatable")
    suite.add_argument("--max-slices", type=int, default=None, metavar="N",
                       help="crop each 3D case to N slices around its labels (shorter runs)")
    suite.add_argument("--tolerance", type=float, default=2.0, help="NSD tolerance in mm")
    suite.add_argument("--compare-model", action="append", metavar="NAME",
                       help="another registered model (e.g. swiftmedsam) run with the same pipelines, as "
                            "columns NAME@PIPELINE with its agreement with --model; repeatable")
    suite.add_argument("-o", "--output", default=None, metavar="JSON",
                       help="write the report; the plot goes beside it (.png)")
    model_options(suite)
    suite.set_defaults(func=cmd_evaluate_suite)

    models = add_command("models", help="list registered models and installed weights",
                         description="List the models of the manifest (LiteMedSAMLib/models.json) and where "
                                     "their weights are installed.")
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")
    models.set_defaults(func=cmd_models)

    demo = add_command("demo", help="segment the shipped example brain MR and score it",
                       description="Segment the shipped example (three structures of a brain MR), write "
                                   "demo.seg.nrrd and demo_overlay.png, and score it against its label.")
    demo.add_argument("-o", "--output", default="output", help="folder for demo.seg.nrrd and demo_overlay.png")
    model_options(demo)
    pipeline_option(demo)
    demo.set_defaults(func=cmd_demo)

    bench = add_command("benchmark", help="time our modes against the official 3D algorithm",
                        description="Run the official LiteMedSAM 3D sweep and each mode on real volumes "
                                    "(one child process each); write JSON and a PNG plot.")
    bench.add_argument("-o", "--output", default="output/benchmark.json", help="JSON path; the plot goes beside it")
    bench.add_argument("--quick", action="store_true", help="10 slices instead of 50 in the 512x512 case")
    bench.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    bench.add_argument("--modes", nargs="+", default=None, choices=list(MODES), help="modes to run (default: all)")
    bench.add_argument("--models", nargs="+", default=None, metavar="NAME",
                       help="more registered models to time in the same modes (rows beside LiteMedSAM's)")
    bench.add_argument("--cases", nargs="+", default=None, help="cases to run (default: all)")
    bench.set_defaults(func=cmd_benchmark)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (2 for a user error, 130 when cancelled, 141
    when the reader of stdout went away, e.g. ``| head``)."""
    try:
        return _run(argv)
    except BrokenPipeError:
        # The reader closed the pipe (``litemedsam models | head -1``): stop quietly, as ``cat``
        # does. Point stdout at devnull so that Python's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141


class _LogFormatter(logging.Formatter):
    """``litemedsam: message`` for notices (INFO), ``WARNING: message`` for the rest."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = "litemedsam" if record.levelno == logging.INFO else record.levelname
        return f"{prefix}: {record.getMessage()}"


def _configure_logging(verbose: bool) -> None:
    """The library's notices (e.g. the one-off model conversion) and warnings at the default
    verbosity; with --verbose also its details and other libraries' notices."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogFormatter())
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])
    logging.getLogger("LiteMedSAMLib").setLevel(logging.DEBUG if verbose else logging.INFO)


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    from .errors import SegmentationCancelled

    try:
        status = args.func(args)
        sys.stdout.flush()
        return status
    except LiteMedSAMError as exc:
        print(f"litemedsam: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, SegmentationCancelled):
        print("litemedsam: cancelled; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
