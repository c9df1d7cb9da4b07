"""The labelled evaluation suite: pipelines scored side by side on public data.

The suite's data is built by ``tools/fetch_public_data.py`` into a cache folder
(``$LITEMEDSAM_DATA_DIR`` or ``~/.cache/litemedsam-data``): one folder per case with
``image.nii.gz`` and ``label.nii.gz`` and an ``index.json`` that says each case's dataset,
modality, split and label names. :func:`run_suite` segments every selected structure of every
selected case with one box per structure, once per pipeline (the official pipeline always
among them), and scores each structure's mask against its label with DSC and NSD.

Prompts (what a user, or the challenge, would give):

- ``start="box3d"``: the 3D bounding box of the label (inclusive voxel indices), swept from its
  middle slice, as the CVPR 2024 challenge prompts 3D cases.
- ``start="box2d"``: a 2D box on one slice (:class:`~LiteMedSAMLib.boxes.SliceBox`): the label's
  bounding box on its middle slice (the middle of its slice range; the nearest labelled slice
  when the label skips that one). The sweep finds the object's extent itself.

Structures no box describes (:func:`box_rule`): a label is skipped when it has fewer than
``MIN_VOXELS`` voxels (``MIN_PIXELS`` in 2-D), or when it fills less than ``MIN_FILL`` of its
bounding box *and* splits into several connected components, the largest holding less than
``MIN_LARGEST`` of it (ribs, costal cartilages, bowel loops cut by the field of view). One
box around such a structure mostly holds other tissue, so its score says more about the
prompt than about the pipeline. Skipped labels are listed with their reason in the report.

Which structures (:func:`select_structures`): at most ``max_structures`` per 3-D case (default
``DEFAULT_MAX_STRUCTURES``): first the clinically typical ones of ``TYPICAL``, in that order,
then the most compact others (highest fill of the bounding box). Instance labels (microscopy
nuclei) are sampled evenly over their label values instead; 2-D cases may hold
``INSTANCE_CAP_2D`` times the cap, since their objects share the one encoded slice and cost
decoder runs only.

Scoring: each structure's mask is scored alone against its label (DSC, NSD at 2 mm, the
challenge's tolerance; pixels count as 1 mm in microscopy images without a physical spacing),
so that boxes which overlap do not change each other's scores.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from scipy import ndimage

from ..errors import LiteMedSAMError
from .metrics import dice, normalized_surface_dice
from .statistics import by_structure_and_subject, describe_both

OFFICIAL = "official"
MIN_VOXELS = 27
MIN_PIXELS = 9
MIN_FILL = 0.15
MIN_LARGEST = 0.9
DEFAULT_MAX_STRUCTURES = 12
INSTANCE_CAP_2D = 4  # 2-D cases share one encoded slice: 4x the cap, decoder runs only
PRESET_BY_MODALITY = {"CT": "ct", "MR": "mr", "microscopy": "mr"}
MODEL_OUTPUT_NOTE = ("TotalSegmentator labels (marked *) are TotalSegmentator's model output "
                     "(its regression references), not manual ground truth.")

# Clinically typical structures, picked first when a case holds more than the cap allows.
TYPICAL = (
    "liver", "spleen", "kidney_left", "kidney_right", "pancreas", "gallbladder", "stomach",
    "aorta", "inferior_vena_cava", "adrenal_gland_left", "adrenal_gland_right", "duodenum",
    "esophagus", "urinary_bladder", "prostate", "heart", "pulmonary_artery",
    "vertebrae_L1", "vertebrae_L2", "vertebrae_L3", "vertebrae_L4", "vertebrae_L5",
    "vertebrae_T12", "vertebrae_S1",
    "Thalamus_L", "Thalamus_R", "Caudate_L", "Caudate_R", "Putamen_L", "Putamen_R",
    "Hippocampus_L", "Hippocampus_R", "Amygdala_L", "Amygdala_R", "Pallidum_L", "Pallidum_R",
)


def default_data_dir() -> Path:
    """The suite's cache folder: ``$LITEMEDSAM_DATA_DIR`` or ``~/.cache/litemedsam-data``."""
    return Path(os.environ.get("LITEMEDSAM_DATA_DIR", "~/.cache/litemedsam-data")).expanduser()


# ---------------------------------------------------------------------------------------------
# Index


@dataclass(frozen=True)
class SuiteCase:
    """One entry of ``index.json``, with absolute paths."""

    case_id: str
    dataset: str
    modality: str
    dimension: int
    split: str
    image: Path
    label: Path
    labels: dict[int, str]
    labels_are_model_output: bool
    source: str = ""
    license: str = ""
    subject: str = ""  # the person or specimen imaged: structures of one subject are not independent


def read_index(data_dir: str | Path | None = None, *, split: str = "test",
               datasets: Sequence[str] | None = None) -> list[SuiteCase]:
    """The suite's cases from ``<data_dir>/index.json``, filtered by split and dataset.

    Args:
        data_dir: the cache folder (default :func:`default_data_dir`).
        split: ``"test"``, ``"train"`` or ``"all"``.
        datasets: keep only these dataset names (or case ids); ``None`` keeps all.

    Raises:
        LiteMedSAMError: no index (the data was not fetched), an unreadable index, an unknown
            split or dataset name, or a case whose files are missing.
    """
    folder = Path(data_dir) if data_dir is not None else default_data_dir()
    path = folder / "index.json"
    if not path.exists():
        raise LiteMedSAMError(f"No suite index at {path}: fetch the data first with "
                              f"`python tools/fetch_public_data.py --cache {folder}`.")
    if split not in ("test", "train", "all"):
        raise LiteMedSAMError(f"Unknown split {split!r}: use test, train or all.")
    try:
        entries = json.loads(path.read_text())["cases"]
    except (ValueError, KeyError, TypeError) as exc:
        raise LiteMedSAMError(f"{path} is not a suite index ({exc}); rebuild it with "
                              "tools/fetch_public_data.py.") from None
    cases = []
    for case_id, e in entries.items():
        cases.append(SuiteCase(
            case_id=case_id, dataset=e["dataset"], modality=e["modality"],
            dimension=int(e["dimension"]), split=e["split"], image=folder / e["image"],
            label=folder / e["label"], labels={int(k): v for k, v in e["labels"].items()},
            labels_are_model_output=bool(e.get("labels_are_model_output", False)),
            source=e.get("source", ""), license=e.get("license", ""), subject=e.get("subject", case_id)))
    if datasets:
        known = {c.dataset for c in cases} | {c.case_id for c in cases}
        unknown = sorted(set(datasets) - known)
        if unknown:
            raise LiteMedSAMError(f"Unknown dataset {', '.join(unknown)}; the index has: "
                                  f"{', '.join(sorted({c.dataset for c in cases}))}.")
        cases = [c for c in cases if c.dataset in datasets or c.case_id in datasets]
    if split != "all":
        cases = [c for c in cases if c.split == split]
    for c in cases:
        for p in (c.image, c.label):
            if not p.exists():
                raise LiteMedSAMError(f"Case {c.case_id}: {p} is missing; rebuild the suite with "
                                      "tools/fetch_public_data.py --force.")
    return cases


# ---------------------------------------------------------------------------------------------
# Structures and boxes


@dataclass
class Structure:
    """One label of a case and what the box rule found about it."""

    value: int
    name: str
    voxels: int
    box: tuple[int, ...]  # inclusive (x0, y0, z0, x1, y1, z1), voxel indices
    fill: float  # voxels / bounding-box voxels
    components: int
    largest: float  # fraction of the voxels in the largest connected component
    skip: str | None = None  # why no box describes it, or None


def describe_label(mask: np.ndarray, value: int = 1, name: str = "") -> Structure:
    """Bounding box, fill, and connected components of a boolean mask ``[z, y, x]``."""
    mask = np.asarray(mask, bool)
    if mask.ndim == 2:
        mask = mask[None]
    voxels = int(mask.sum())
    if voxels == 0:
        return Structure(value, name, 0, (), 0.0, 0, 0.0, "absent")
    zz, yy, xx = (np.flatnonzero(mask.any(axis=a)) for a in ((1, 2), (0, 2), (0, 1)))
    box = (int(xx[0]), int(yy[0]), int(zz[0]), int(xx[-1]), int(yy[-1]), int(zz[-1]))
    sub = mask[zz[0]:zz[-1] + 1, yy[0]:yy[-1] + 1, xx[0]:xx[-1] + 1]
    labels, count = ndimage.label(sub, structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(labels.ravel())[1:]
    return Structure(value, name, voxels, box, voxels / sub.size, int(count),
                     float(sizes.max() / voxels))


def box_rule(s: Structure, dimension: int = 3) -> str | None:
    """Why no box describes the structure (see the module docstring), or None if one does."""
    if s.voxels == 0:
        return "absent"
    smallest = MIN_PIXELS if dimension == 2 else MIN_VOXELS
    if s.voxels < smallest:
        return f"smaller than {smallest} voxels"
    if s.fill < MIN_FILL and s.components > 1 and s.largest < MIN_LARGEST:
        return (f"fills {100 * s.fill:.0f}% of its box and splits into {s.components} parts "
                "(no box describes it)")
    return None


def select_structures(label: np.ndarray, names: dict[int, str], *, dimension: int = 3,
                      max_structures: int | None = DEFAULT_MAX_STRUCTURES,
                      only: Sequence[str] | None = None,
                      instances: bool = False) -> tuple[list[Structure], list[Structure]]:
    """The structures to prompt, and those left out (with ``skip`` set to why).

    ``only`` keeps the named structures alone (still subject to the box rule).
    ``instances``: the labels are instances of one kind (nuclei), sampled evenly when capped.
    The cap is ``max_structures`` per 3-D case and ``INSTANCE_CAP_2D`` times that per 2-D case
    (see the module docstring).
    """
    label = np.asarray(label)
    if label.ndim == 2:
        label = label[None]
    objects = ndimage.find_objects(label.astype(np.int64))
    eligible, skipped = [], []
    for value, name in sorted(names.items()):
        if only is not None and name not in only:
            continue
        if value > len(objects) or objects[value - 1] is None:
            s = Structure(value, name, 0, (), 0.0, 0, 0.0, "absent")
        else:
            z, y, x = objects[value - 1]
            offset = np.array([x.start, y.start, z.start] * 2)
            s = describe_label(label[objects[value - 1]] == value, value, name)
            s.box = tuple(int(v) for v in np.array(s.box) + offset)
        s.skip = box_rule(s, dimension)
        (skipped if s.skip else eligible).append(s)
    cap = None if max_structures is None else max_structures * (INSTANCE_CAP_2D if dimension == 2 else 1)
    if cap is not None and len(eligible) > cap:
        if instances:
            # Evenly spaced over the label values: a sample, not the roundest objects.
            keep = set(np.linspace(0, len(eligible) - 1, cap).round().astype(int).tolist())
            order = [s for i, s in enumerate(eligible) if i in keep] + \
                    [s for i, s in enumerate(eligible) if i not in keep]
        else:
            rank = {n: i for i, n in enumerate(TYPICAL)}
            order = sorted(eligible, key=lambda s: (rank.get(s.name, len(rank)), -s.fill))
        for s in order[cap:]:
            s.skip = f"beyond the cap of {cap} structures per case"
        skipped += order[cap:]
        eligible = sorted(order[:cap], key=lambda s: s.value)
    return eligible, skipped


def middle_slice_box(mask: np.ndarray) -> tuple[int, int, int, int, int]:
    """``(z, x0, y0, x1, y1)``: the mask's 2D bounding box on its middle slice.

    The middle of the slice range; when the mask skips that slice, the labelled slice nearest
    to it (the lower one on a tie).
    """
    mask = np.asarray(mask, bool)
    if mask.ndim == 2:
        mask = mask[None]
    present = np.flatnonzero(mask.any(axis=(1, 2)))
    if present.size == 0:
        raise LiteMedSAMError("middle_slice_box: the mask is empty")
    middle = (int(present[0]) + int(present[-1])) // 2
    z = int(present[np.argmin(np.abs(present - middle))])
    yy, xx = np.nonzero(mask[z])
    return z, int(xx.min()), int(yy.min()), int(xx.max()), int(yy.max())


# ---------------------------------------------------------------------------------------------
# Running


def _supports_pipelines() -> bool:
    from ..segmentation import segment_image
    return "pipeline" in inspect.signature(segment_image).parameters


def _prompts(structures: list[Structure], label: np.ndarray, start: str) -> list:
    from ..boxes import Box3D

    if start == "box3d":
        return [Box3D(*s.box) for s in structures]
    from ..boxes import SliceBox  # added with the pipeline API

    return [SliceBox(*middle_slice_box(label == s.value)) for s in structures]


@dataclass
class LoadedCase:
    """One suite case read into memory (image, label, spacing) for scoring."""

    case: SuiteCase
    image: object  # SimpleITK image, kept in memory across pipelines
    label: np.ndarray  # [z, y, x]
    spacing_zyx: tuple[float, ...]
    z_range: tuple[int, int] | None = None  # slices kept with max_slices, inclusive


def load_case(case: SuiteCase, max_slices: int | None = None) -> LoadedCase:
    """Read ``case``'s image and label (checked to match), with its spacing (1 for microscopy)
    and, with ``max_slices``, only that many slices around its labels."""
    import SimpleITK as sitk

    image = sitk.ReadImage(str(case.image))
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(case.label)))
    if label.shape != sitk.GetArrayViewFromImage(image).shape:
        raise LiteMedSAMError(f"Case {case.case_id}: label {label.shape} and image "
                              f"{sitk.GetArrayViewFromImage(image).shape} differ in shape")
    spacing = tuple(reversed(image.GetSpacing()))
    if case.modality == "microscopy":
        spacing = tuple(1.0 for _ in spacing)
    loaded = LoadedCase(case, image, label, spacing)
    if max_slices is not None and label.ndim == 3 and label.shape[0] > max_slices:
        present = np.flatnonzero((label > 0).any(axis=(1, 2)))
        centre = (int(present[0]) + int(present[-1])) // 2 if present.size else label.shape[0] // 2
        z0 = max(0, min(centre - max_slices // 2, label.shape[0] - max_slices))
        z1 = z0 + max_slices - 1
        loaded.image = image[:, :, z0:z1 + 1]
        loaded.label = label[z0:z1 + 1]
        loaded.z_range = (z0, z1)
    return loaded


@dataclass
class CaseStructures:
    """One case read for scoring: its image and labels, the structures a box describes (the
    suite's selection), those it skipped, its intensity preset and one prompt per structure."""

    loaded: LoadedCase
    structures: list[Structure]
    skipped: list[Structure]
    preset: str
    prompts: list


def case_structures(case: SuiteCase, *, start: str = "box3d",
                    max_structures: int | None = DEFAULT_MAX_STRUCTURES,
                    only: Sequence[str] | None = None, max_slices: int | None = None) -> CaseStructures:
    """Read ``case`` and choose its structures and prompts as :func:`run_suite` does (for
    studies that score something else on the same structures)."""
    loaded = load_case(case, max_slices)
    eligible, skipped = select_structures(loaded.label, case.labels, dimension=case.dimension,
                                          max_structures=max_structures, only=only,
                                          instances=case.modality == "microscopy")
    prompts = _prompts(eligible, loaded.label, start) if eligible else []
    return CaseStructures(loaded, eligible, skipped, PRESET_BY_MODALITY.get(case.modality, "auto"), prompts)


def run_suite(data_dir: str | Path | None = None, *, pipelines: Sequence[str] = (OFFICIAL,),
              split: str = "test", datasets: Sequence[str] | None = None,
              start: str = "box3d", model_name: str | None = None, weights: str | None = None,
              mode: str | None = None, threads: int | None = None,
              max_structures: int | None = DEFAULT_MAX_STRUCTURES, only: Sequence[str] | None = None,
              max_slices: int | None = None, tolerance_mm: float = 2.0,
              compare_models: Sequence[str] = (),
              log: Callable[[str], None] | None = None) -> dict:
    """Run the pipelines over the suite and return the report (see :func:`format_report`).

    The official pipeline is always run, first, so that every other pipeline is compared with
    it on the same structures in the same run. Each case is read once and kept in memory for
    all pipelines. ``max_slices`` crops each 3-D case to that many slices around its labels
    (structures are then boxed on the crop, and the crop is recorded in the report).

    ``compare_models`` (registry names, e.g. a student) run every pipeline too, as columns
    ``<model>@<pipeline>``; each of their structures also gets ``dsc_vs_model``, its mask's
    DSC against the main model's mask in the same pipeline (agreement with the teacher).
    """
    from ..backends import DEFAULT_MODE
    from ..segmentation import segment_image

    names = [OFFICIAL] + [p for p in dict.fromkeys(pipelines) if p != OFFICIAL]
    pipeline_names = list(names)
    extra = [m for m in dict.fromkeys(compare_models) if m != model_name]
    runs = [(n, n, model_name, True) for n in pipeline_names]
    runs += [(f"{m}@{n}", n, m, False) for m in extra for n in pipeline_names]
    names = [label for label, _, _, _ in runs]
    has_api = _supports_pipelines()
    if not has_api and names != [OFFICIAL]:
        raise LiteMedSAMError(f"Pipelines {', '.join(names[1:])} need the pipeline API "
                              "(segment_image(..., pipeline=...)); only 'official' is available.")
    if has_api:
        from ..pipeline import get_pipeline
        for name in pipeline_names:
            get_pipeline(name)  # fails early, with the pipeline module's message
    if start not in ("box3d", "box2d"):
        raise LiteMedSAMError(f"Unknown start {start!r}: use box3d or box2d.")
    if start == "box2d" and not has_api:
        raise LiteMedSAMError("--start box2d needs the pipeline API (SliceBox); merge main.")
    cases = read_index(data_dir, split=split, datasets=datasets)
    if not cases:
        where = f" for {', '.join(datasets)}" if datasets else ""
        raise LiteMedSAMError(f"No cases in split {split!r}{where}.")
    say = log or (lambda _msg: None)
    report = {
        "format": 1, "pipelines": names, "start": start, "mode": mode or DEFAULT_MODE,
        "model": model_name, "compare_models": extra, "weights": weights, "split": split, "tolerance_mm": tolerance_mm,
        "max_structures": max_structures, "max_slices": max_slices,
        "box_rule": {"min_voxels": MIN_VOXELS, "min_pixels_2d": MIN_PIXELS, "min_fill": MIN_FILL,
                     "min_largest_component": MIN_LARGEST},
        "model_output_note": MODEL_OUTPUT_NOTE, "cases": [],
    }
    for case in cases:
        chosen = case_structures(case, start=start, max_structures=max_structures, only=only,
                                 max_slices=max_slices)
        loaded, eligible, skipped, preset = chosen.loaded, chosen.structures, chosen.skipped, chosen.preset
        entry = {
            "case": case.case_id, "dataset": case.dataset, "subject": case.subject,
            "modality": case.modality, "dimension": case.dimension, "preset": preset,
            "labels_are_model_output": case.labels_are_model_output,
            "slices": [int(v) for v in loaded.z_range] if loaded.z_range else None,
            "skipped": [{"label": s.value, "name": s.name, "reason": s.skip} for s in skipped],
            "structures": [], "timing": {},
        }
        report["cases"].append(entry)
        if not eligible:
            say(f"{case.case_id}: no structure a box describes; skipped")
            continue
        prompts = chosen.prompts
        rows = [{"label": s.value, "name": s.name, "voxels": s.voxels, "box": list(s.box),
                 "fill": round(s.fill, 4), "components": s.components, "metrics": {}}
                for s in eligible]
        for row, prompt in zip(rows, prompts):
            if start == "box2d":
                row["box2d"] = [int(v) for v in (prompt.z, prompt.x0, prompt.y0, prompt.x1, prompt.y1)]
        entry["structures"] = rows
        main_masks: dict[str, list] = {}
        for name, pipeline_name, member, is_main in runs:
            kwargs = {"pipeline": pipeline_name} if has_api else {}
            t0 = time.perf_counter()
            masks, predictor = segment_image(loaded.image, prompts, model_name=member,
                                             weights=weights if is_main else None,
                                             preset=preset, mode=mode, threads=threads, **kwargs)
            seconds = time.perf_counter() - t0
            entry["timing"][name] = {"seconds": round(seconds, 3),
                                     "encoded_slices": int(predictor.encoder_runs)}
            for k, (row, s, mask) in enumerate(zip(rows, eligible, masks)):
                gt = loaded.label == s.value
                pred = np.asarray(mask, bool).reshape(gt.shape)
                row["metrics"][name] = {
                    "dsc": round(dice(pred, gt), 6),
                    "nsd": round(normalized_surface_dice(pred, gt, loaded.spacing_zyx, tolerance_mm), 6)}
                if not is_main:
                    ref = np.asarray(main_masks[pipeline_name][k], bool).reshape(gt.shape)
                    row["metrics"][name]["dsc_vs_model"] = round(dice(pred, ref), 6)
            if is_main:
                main_masks[pipeline_name] = masks
            say(f"{case.case_id}: {name}: {len(rows)} structures, {seconds:.1f} s, "
                f"{predictor.encoder_runs} encoded slices, mean DSC "
                f"{np.mean([r['metrics'][name]['dsc'] for r in rows]):.4f}")
    report["summary"] = summarize(report)
    return report


# ---------------------------------------------------------------------------------------------
# Summaries, table, plot


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def summarize(report: dict) -> dict:
    """Means per dataset and overall, per pipeline, with the difference to the official one.

    ``structures`` means weigh every structure alike; ``datasets`` means are the mean of the
    per-dataset means (so 125 nuclei count as one dataset, not 125 structures); ``volume_*``
    means are over the structures of 3-D volumes only (the 2-D images' many nuclei, where a 2D
    start and a 3D box are the same prompt, can carry a mean over structures on their own).
    """
    names = report["pipelines"]
    per_dataset: dict[str, dict] = {}
    for case in report["cases"]:
        d = per_dataset.setdefault(case["dataset"], {
            "model_output": case["labels_are_model_output"], "structures": 0,
            **{n: {"dsc": [], "nsd": [], "seconds": 0.0, "encoded_slices": 0} for n in names}})
        d["structures"] += len(case["structures"])
        for n in names:
            for row in case["structures"]:
                d[n]["dsc"].append(row["metrics"][n]["dsc"])
                d[n]["nsd"].append(row["metrics"][n]["nsd"])
            t = case["timing"].get(n)
            if t:
                d[n]["seconds"] += t["seconds"]
                d[n]["encoded_slices"] += t["encoded_slices"]
    overall = {n: {"dsc": [], "nsd": [], "dataset_dsc": [], "dataset_nsd": [], "seconds": 0.0,
                   "encoded_slices": 0} for n in names}
    out_datasets = {}
    for ds, d in per_dataset.items():
        row = {"structures": d["structures"], "labels_are_model_output": d["model_output"]}
        for n in names:
            mean_dsc, mean_nsd = _mean(d[n]["dsc"]), _mean(d[n]["nsd"])
            row[n] = {"dsc": mean_dsc, "nsd": mean_nsd, "seconds": round(d[n]["seconds"], 3),
                      "encoded_slices": d[n]["encoded_slices"]}
            o = overall[n]
            o["dsc"] += d[n]["dsc"]
            o["nsd"] += d[n]["nsd"]
            if mean_dsc is not None:
                o["dataset_dsc"].append(mean_dsc)
                o["dataset_nsd"].append(mean_nsd)
            o["seconds"] += d[n]["seconds"]
            o["encoded_slices"] += d[n]["encoded_slices"]
        out_datasets[ds] = row
    volume_rows = [row for case in report["cases"] if case.get("dimension", 3) == 3
                   for row in case["structures"]]
    out_overall = {}
    for n in names:
        o = overall[n]
        out_overall[n] = {
            "structures": len(o["dsc"]), "dsc": _mean(o["dsc"]), "nsd": _mean(o["nsd"]),
            "dataset_mean_dsc": _mean(o["dataset_dsc"]), "dataset_mean_nsd": _mean(o["dataset_nsd"]),
            "volume_structures": len(volume_rows),
            "volume_dsc": _mean([r["metrics"][n]["dsc"] for r in volume_rows]),
            "volume_nsd": _mean([r["metrics"][n]["nsd"] for r in volume_rows]),
            "seconds": round(o["seconds"], 3), "encoded_slices": o["encoded_slices"]}
    for n in names:  # compared models: agreement with the main model's masks, same pipeline
        agreement = [row["metrics"][n]["dsc_vs_model"] for case in report["cases"]
                     for row in case["structures"] if "dsc_vs_model" in row["metrics"][n]]
        if agreement:
            out_overall[n]["dsc_vs_model"] = _mean(agreement)
            out_overall[n]["dsc_vs_model_min"] = float(np.min(agreement))
    ref = out_overall[OFFICIAL]
    for n in names[1:]:
        for key in ("dsc", "nsd", "dataset_mean_dsc", "dataset_mean_nsd", "volume_dsc", "volume_nsd"):
            if out_overall[n][key] is not None and ref[key] is not None:
                out_overall[n][f"{key}_minus_official"] = out_overall[n][key] - ref[key]
    return {"datasets": out_datasets, "overall": out_overall, "differences": _differences(report)}


def _differences(report: dict) -> dict:
    """Per pipeline, its paired DSC difference to the official one with bootstrap intervals
    (:func:`~LiteMedSAMLib.evaluation.statistics.by_structure_and_subject`): over all structures and
    over those of 3-D volumes, each with structures resampled and with subjects resampled (a
    report written before subjects were recorded counts each case as its own subject)."""
    names = report["pipelines"]
    rows = [(case.get("subject") or case["case"], case.get("dimension", 3), row)
            for case in report["cases"] for row in case["structures"]]
    out = {}
    for n in names[1:]:
        out[n] = {}
        for key, keep in (("structures", lambda dim: True), ("volume_structures", lambda dim: dim == 3)):
            chosen = [(subject, row) for subject, dim, row in rows if keep(dim)
                      and row["metrics"][n].get("dsc") is not None and row["metrics"][OFFICIAL].get("dsc") is not None]
            if not chosen:
                continue
            a = [row["metrics"][n]["dsc"] for _, row in chosen]
            b = [row["metrics"][OFFICIAL]["dsc"] for _, row in chosen]
            out[n][key] = by_structure_and_subject(a, b, [s for s, _ in chosen])
    return out


def _fmt(v: float | None, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:+.3f}" if signed else f"{v:.3f}"


def format_report(report: dict, per_structure: bool = True) -> str:
    """The report as plain-text tables: per dataset, per structure, means, time."""
    names = report["pipelines"]
    others = names[1:]
    lines = [f"Suite: split {report['split']}, start {report['start']}, mode {report['mode']}, "
             f"NSD at {report['tolerance_mm']:g} mm; pipelines: {', '.join(names)}",
             MODEL_OUTPUT_NOTE, ""]

    def header(first: str, width: int) -> str:
        cols = [f"{'DSC ' + n:>{max(10, len(n) + 4)}}" for n in names]
        cols += [f"{'d ' + n:>{max(8, len(n) + 2)}}" for n in others]
        cols += [f"{'NSD ' + n:>{max(10, len(n) + 4)}}" for n in names]
        return f"{first:<{width}}" + " ".join(cols)

    def values(metrics: dict, width_first: str, width: int) -> str:
        cols = [f"{_fmt(metrics[n]['dsc']):>{max(10, len(n) + 4)}}" for n in names]
        for n in others:
            a, b = metrics[n]["dsc"], metrics[OFFICIAL]["dsc"]
            cols.append(f"{_fmt(None if a is None or b is None else a - b, True):>{max(8, len(n) + 2)}}")
        cols += [f"{_fmt(metrics[n]['nsd']):>{max(10, len(n) + 4)}}" for n in names]
        return f"{width_first:<{width}}" + " ".join(cols)

    summary = report["summary"]
    lines.append("Per dataset (mean over structures)")
    lines.append(header("dataset (structures)", 30))
    for ds, row in summary["datasets"].items():
        star = "*" if row["labels_are_model_output"] else ""
        lines.append(values(row, f"{ds}{star} ({row['structures']})", 30))
    if per_structure:
        lines += ["", "Per structure"]
        lines.append(header("case / structure", 44))
        for case in report["cases"]:
            star = "*" if case["labels_are_model_output"] else ""
            if len(case["structures"]) > 30:
                lines.append(f"{case['case'] + star}: {len(case['structures'])} objects, see the "
                             "dataset row and the JSON")
                continue
            for row in case["structures"]:
                lines.append(values(row["metrics"], f"{case['case']}{star} / {row['name']}"[:43], 44))
    overall = summary["overall"]
    lines += ["", "Means"]
    lines.append(header("", 30))
    lines.append(values(overall, f"structures ({overall[OFFICIAL]['structures']})", 30))
    lines.append(values({n: {"dsc": overall[n]["dataset_mean_dsc"], "nsd": overall[n]["dataset_mean_nsd"]}
                         for n in names}, f"datasets ({len(summary['datasets'])})", 30))
    volumes = overall[OFFICIAL]["volume_structures"]
    if 0 < volumes < overall[OFFICIAL]["structures"]:  # 2-D images too: say what the 3-D ones give
        lines.append(values({n: {"dsc": overall[n]["volume_dsc"], "nsd": overall[n]["volume_nsd"]}
                             for n in names}, f"structures of 3-D volumes ({volumes})", 30))
    differences = summary.get("differences", {})
    if any(differences.values()):
        lines += ["", "DSC minus the official's, paired by structure (bootstrap 95% intervals, resampling "
                  "structures; then resampling subjects)"]
        for n, parts in differences.items():
            for key, what in (("structures", "all structures"), ("volume_structures", "3-D volumes")):
                if key not in parts or (key == "volume_structures"
                                        and not 0 < volumes < overall[OFFICIAL]["structures"]):
                    continue
                lines.append(f"{n + ', ' + what:<30}"
                             + describe_both(**parts[key]))
    agreeing = [n for n in names if "dsc_vs_model" in overall[n]]
    if agreeing:
        main = report.get("model") or "the default model"
        lines += ["", f"Agreement with {main} in the same pipeline (mask DSC over structures)"]
        for n in agreeing:
            lines.append(f"{n:<30}mean {overall[n]['dsc_vs_model']:.3f}, lowest {overall[n]['dsc_vs_model_min']:.3f}")
    lines += ["", f"{'pipeline':<30}{'seconds':>10}{'encoded slices':>16}"]
    for n in names:
        lines.append(f"{n:<30}{overall[n]['seconds']:>10.1f}{overall[n]['encoded_slices']:>16}")
    skipped = [(c["case"], s) for c in report["cases"] for s in c["skipped"]]
    if skipped:
        reasons: dict[str, int] = {}
        for _, s in skipped:
            key = s["reason"].split(" (")[0] if "splits" not in s["reason"] else "no box describes it"
            reasons[key] = reasons.get(key, 0) + 1
        lines += ["", "Skipped labels: " + "; ".join(f"{k}: {v}" for k, v in sorted(reasons.items()))]
    return "\n".join(lines)


def _legend_label(name: str, differences: dict) -> str:
    """A pipeline's legend entry: its name, and its mean DSC difference to the official one
    with the interval over structures where the summary has them."""
    d = differences.get(name, {}).get("structures", {}).get("by_structure")
    if not d:
        return name
    label = f"{name}\nDSC {d['mean']:+.3f} vs official"
    if d["low"] is not None:
        label += f"\n(95% CI {d['low']:+.3f} to {d['high']:+.3f},\n{d['samples']} structures)"
    return label


def plot_report(report: dict, path: str | Path) -> None:
    """Per-structure DSC, one row per structure, one marker per pipeline (official in black).

    Cases with more than 30 objects (nuclei) get one row with their mean. Each other pipeline's
    legend entry gives its mean DSC difference to the official one with the bootstrap interval
    over structures (the report's ``summary``, when it has one).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = report["pipelines"]
    rows = []
    for case in report["cases"]:
        star = "*" if case["labels_are_model_output"] else ""
        if len(case["structures"]) > 30:
            rows.append((f"{case['case']}{star}: mean of {len(case['structures'])}",
                         {n: float(np.mean([r["metrics"][n]["dsc"] for r in case["structures"]]))
                          for n in names}))
        else:
            rows += [(f"{case['case']}{star} / {r['name']}", {n: r["metrics"][n]["dsc"] for n in names})
                     for r in case["structures"]]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.24 * len(rows)))
    y = np.arange(len(rows))[::-1]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    differences = report.get("summary", {}).get("differences", {})
    for i, n in enumerate(names):
        xs = [r[1][n] for r in rows]
        style = dict(color="black", marker="o", s=30, zorder=3) if n == OFFICIAL else \
            dict(color=colors[i % len(colors)], marker="D", s=22, zorder=4)
        ax.scatter(xs, y, label=_legend_label(n, differences), **style)
    for yy, (_, m) in zip(y, rows):
        vals = [m[n] for n in names]
        ax.plot([min(vals), max(vals)], [yy, yy], color="0.75", lw=1, zorder=1)
    ax.set_yticks(y)
    ax.set_yticklabels([r[0] for r in rows], fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel("DSC")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"Suite ({report['split']} split, {report['start']} start, {report['mode']} mode)"
                 "\n* labels are TotalSegmentator model output", fontsize=9)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(str(path), dpi=110, bbox_inches="tight")
    plt.close(fig)
