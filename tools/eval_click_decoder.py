"""Compare corrections (trained click decoder, edit heuristic) with the CVPR 2025 click protocol
on the test split of the public-data index and the shipped example.

    python tools/eval_click_decoder.py --index /work/cache/litemedsam-data/index.json \
        --labels-per-case 4 --corrections trained edit -o output/click_eval.json

Each case's image is set once; both corrections run on the same predictor (slice embeddings
are encoded once and, with ``--embedding-cache``, kept on disk between runs: the key is the
SHA-1 of the encoder input, so a cached embedding is exactly what the encoder would give).
Per case a few structures are taken, spread over the sizes of its labels (deterministic).
Prints, per correction, the mean DSC after the box and each click, DSC_AUC / NSD_AUC, the
clicked slice's time and where the clicks' effect went (voxels made right on the clicked slices
against a perfect correction of each clicked error region, and on the slices re-propagated from
them) and how many clicks changed nothing; each click against the step before it; then the
first correction against each other one, paired by structure: the difference after the last
click and in DSC_AUC with bootstrap 95% intervals, resampling structures and then subjects (the
shipped example is the MNI152 subject); writes everything to the JSON file.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from LiteMedSAMLib.backends import make_predictor  # noqa: E402
from LiteMedSAMLib.boxes import Box3D  # noqa: E402
from LiteMedSAMLib.evaluation.clicks import click_auc, click_steps, error_region, evaluate_clicks  # noqa: E402
from LiteMedSAMLib.evaluation.statistics import (  # noqa: E402
    PairedDifference,
    by_structure_and_subject,
    describe_both,
)
from LiteMedSAMLib.example import EXAMPLE_IMAGE, EXAMPLE_LABEL  # noqa: E402
from LiteMedSAMLib.imageio import read_image, read_label_volume  # noqa: E402
from LiteMedSAMLib.refinement import RefinementSession  # noqa: E402

BOX_ONLY = "edit-box-only"
"""The edit heuristic as a model without a click decoder has it: the box pass without the carry,
corrections re-propagated with their box alone (the baseline the click decoder issue measures
against)."""

ORACLE = "oracle-local"
"""A correction that knows the reference: the clicked slice's error region under the click is
set right, nothing else on the slice changes, then propagation runs as the pipeline does (with
the carry the correction would have, as ``trained-edit``). The bound of what a click decoder
could reach with a perfect correction of what each click points at."""


def oracle_session(gt: np.ndarray) -> type[RefinementSession]:
    """A :class:`RefinementSession` whose correction is :data:`ORACLE`'s, for the reference ``gt``."""
    class OracleSession(RefinementSession):
        def _correct(self, z, chain):
            current = chain.masks[-1] > 0
            return (current ^ error_region(current, gt[z], chain.prompts[-1].pixels)).astype(np.uint8)

    return OracleSession


class DiskCachedEncoder:
    """Wrap an encoder: embeddings are stored under the SHA-1 of the input tensor (and the
    mode, for modes other than ``exact``: a ``fast`` embedding is another embedding)."""

    def __init__(self, encoder, folder: Path, mode: str = "exact") -> None:
        self.encoder, self.folder = encoder, Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.suffix = "" if mode == "exact" else f"-{mode}"
        self.runs = 0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        key = hashlib.sha1(images.numpy().tobytes()).hexdigest()
        path = self.folder / f"{key}{self.suffix}.pt"
        if path.is_file():
            return torch.load(path, weights_only=True)
        emb = self.encoder(images)
        torch.save(emb, path)
        self.runs += 1
        return emb


def box_only_session(predictor, box, *, correction="edit", pipeline=None, **kwargs) -> RefinementSession:
    """A session of :data:`BOX_ONLY`: the edit, and no click decoder anywhere."""
    from dataclasses import replace

    from LiteMedSAMLib.pipeline import get_pipeline

    if correction != "edit":
        raise ValueError(f"{BOX_ONLY} is the edit correction, not {correction!r}")
    return RefinementSession(predictor, box, correction="edit", carry=False,
                             pipeline=replace(get_pipeline(pipeline), carry=False), **kwargs)


def pick_labels(gt: np.ndarray, count: int, min_voxels: int = 200, box_rule: bool = False) -> list[int]:
    """``count`` labels of ``gt`` with at least ``min_voxels`` voxels, spread over their sizes;
    ``box_rule``: only labels a box describes, by the suite's rule (``suite.box_rule``)."""
    from scipy import ndimage

    from LiteMedSAMLib.evaluation.suite import box_rule as rule
    from LiteMedSAMLib.evaluation.suite import describe_label

    ids, sizes = np.unique(gt[gt > 0], return_counts=True)
    keep = [(int(s), int(i)) for i, s in zip(ids, sizes) if s >= min_voxels]
    if box_rule:
        where = ndimage.find_objects(gt.astype(np.int64))  # each label's box: describe it on its crop
        keep = [(s, i) for s, i in keep if rule(describe_label(gt[where[i - 1]] == i, i)) is None]
    keep.sort()
    if len(keep) <= count:
        return [i for _, i in keep]
    positions = np.linspace(0, len(keep) - 1, count + 2)[1:-1].round().astype(int)
    return [keep[p][1] for p in positions]


def cases(index: Path | None, split: str = "test") -> list[tuple[str, Path, Path, str, str]]:
    """``(name, image, label, preset, subject)`` of the index's 3D cases of ``split`` and, for the
    test split, the shipped example (the index's ``mni152_example``, which it replaces: the same
    subject); MR uses the ``mr`` preset (the MR volumes here are uint8, which ``auto`` would leave
    as is). The train split's volumes trained the click decoder: use them to confirm a rule that
    does not depend on it (the correction heuristic's), not the decoder."""
    found = []
    example_subject = "shipped_example"
    if index is not None:
        data = json.loads(index.read_text())
        for key, case in data["cases"].items():
            if key == "mni152_example":
                example_subject = case.get("subject", key)
            elif case["split"] == split and case.get("dimension") == 3:
                preset = "mr" if case.get("modality") == "MR" else "auto"
                found.append((key, index.parent / case["image"], index.parent / case["label"], preset,
                              case.get("subject", key)))
    if split == "test":
        found.append(("shipped_example", Path(EXAMPLE_IMAGE), Path(EXAMPLE_LABEL), "mr", example_subject))
    return found


def summarize(report: dict, corrections: list[str]) -> dict:
    """Per correction, over every structure of ``report``: the mean DSC / NSD after the box and
    each click, the mean DSC_AUC / NSD_AUC, the clicked slice's time, the voxels made right
    (summed over every click: on the clicked slices, on the slices re-propagated from them, and a
    perfect correction of each error region clicked), and how many clicks left their slice worse
    or changed no slice at all (the user, like the protocol, would click the same pixel again);
    and per case the mean DSC after the last click (where a correction gains or loses)."""
    summary = {}
    for correction in corrections:
        rows = [e[correction] for c in report["cases"].values() for e in c["labels"].values()]
        times = [t for r in rows for t in r["slice_seconds"]]
        summary[correction] = {
            "structures": len(rows),
            "dsc": list(np.mean([r["dsc"] for r in rows], axis=0)),
            "nsd": list(np.mean([r["nsd"] for r in rows], axis=0)),
            "dsc_auc": float(np.mean([r["dsc_auc"] for r in rows])),
            "nsd_auc": float(np.mean([r["nsd_auc"] for r in rows])),
            "slice_seconds_median": float(np.median(times)) if times else None,
            "slice_seconds_p90": float(np.percentile(times, 90)) if times else None,
            **{key: int(sum(sum(r[key]) for r in rows)) for key in ("clicked_gain", "propagated_gain", "local_bound")},
            "clicks_hurting_their_slice": int(sum(g < 0 for r in rows for g in r["clicked_gain"])),
            "clicks_changing_nothing": int(sum(n == 0 for r in rows for n in r.get("changed_slices", []))),
            "clicks": int(sum(len(r["clicked_gain"]) for r in rows)),
            # the mean DSC after the last click per case: where a correction gains or loses
            "last_dsc_per_case": {name: float(np.mean([e[correction]["dsc"][-1] for e in c["labels"].values()]))
                                  for name, c in report["cases"].items() if c["labels"]},
        }
    return summary


def click_steps_of(report: dict, correction: str) -> list[dict]:
    """Each click of ``correction`` against the step before it over every structure of
    ``report`` (:func:`~LiteMedSAMLib.evaluation.clicks.click_steps`): the issue's "higher after
    every click than before it, on average", with how many structures rose and fell."""
    return click_steps([e[correction]["dsc"] for c in report["cases"].values() for e in c["labels"].values()])


def differences(report: dict, corrections: list[str]) -> dict:
    """The first correction against each other one, paired by structure: the DSC after the last
    click and DSC_AUC, each as :func:`~LiteMedSAMLib.evaluation.statistics.paired_difference`
    with structures resampled and with subjects resampled (a report without subjects counts
    each case as one)."""
    entries = [(c.get("subject", name), e) for name, c in report["cases"].items() for e in c["labels"].values()]
    first = corrections[0]
    out = {}
    for other in corrections[1:]:
        out[other] = {}
        for key, value in (("after_last_click", lambda r: r["dsc"][-1]), ("dsc_auc", lambda r: r["dsc_auc"])):
            a = [value(e[first]) for _, e in entries]
            b = [value(e[other]) for _, e in entries]
            out[other][key] = by_structure_and_subject(a, b, [s for s, _ in entries])
    return out


def main(argv: list[str] | None = None) -> int:
    import SimpleITK as sitk

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index", type=Path, default=None)
    parser.add_argument("--split", choices=("test", "train"), default="test",
                        help="the index's 3D volumes of this split (test: with the shipped example)")
    parser.add_argument("--labels-per-case", type=int, default=4)
    parser.add_argument("--box-rule", action="store_true",
                        help="pick only labels a box describes, by the suite's rule (not before 2026-12-06: "
                             "the recorded numbers of the 19 structures did not apply it)")
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--corrections", nargs="+", default=["trained", "edit"],
                        help=f"corrections to compare; {ORACLE}: a perfect correction of the error region under "
                             f"each click (the bound); {BOX_ONLY}: the edit with no click decoder anywhere (no "
                             "carried box pass, no carried corrections)")
    parser.add_argument("--pipeline", default="official",
                        help="predictor pipeline (official: whole slices, so embeddings are shared by all "
                             "structures of a case)")
    parser.add_argument("--no-edge-cut", action="store_true",
                        help="negative clicks without the edge cut (LiteMedSAMLib.edge_cut), as before 2026-12-06")
    parser.add_argument("--reach", type=float, default=None,
                        help="keep each edit's change within this many depths of the click "
                             "(RefinementSession(reach=)); default: the session's")
    parser.add_argument("--scribbles", action="store_true",
                        help="each interaction a stroke through the click along its error region (not the click)")
    parser.add_argument("--embedding-cache", type=Path, default=None)
    parser.add_argument("--encode-only", action="store_true", help="only fill the embedding cache")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--mode", choices=("exact", "fast", "torch"), default="exact",
                        help="the predictor's mode (fast: what the Slicer module runs where the CPU has bfloat16)")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)

    report = {"clicks": args.clicks, "pipeline": args.pipeline, "split": args.split, "box_rule": args.box_rule,
              "edge_cut": not args.no_edge_cut, "reach": args.reach, "scribbles": args.scribbles, "cases": {}}
    predictor = make_predictor("litemedsam", args.mode, threads=args.threads)
    report["mode"] = predictor.mode
    if args.embedding_cache is not None:
        predictor.encoder = DiskCachedEncoder(predictor.encoder, args.embedding_cache, predictor.mode)
    for name, image_path, label_path, preset, subject in cases(args.index, args.split):
        array = sitk.GetArrayFromImage(read_image(image_path))
        gt, spacing = read_label_volume(label_path)
        labels = pick_labels(gt, args.labels_per_case, box_rule=args.box_rule)
        predictor.cache_slices = array.shape[0]
        predictor.set_volume(array, preset=preset, slice_spacing=float(spacing[0]))
        start = time.perf_counter()
        if args.encode_only:
            zs = sorted({z for lab in labels for z in Box3D.from_mask(gt == lab).z_range})
            for z in zs:
                predictor.embedding(z)
            print(f"{name}: encoded {len(zs)} slices in {time.perf_counter() - start:.0f} s", flush=True)
            continue
        report["cases"][name] = {"labels": {}, "preset": preset, "image": str(image_path), "subject": subject}
        for label in labels:
            entry = {}
            for correction in args.corrections:
                oracle = correction == ORACLE
                session_class = (oracle_session(gt == label) if oracle
                                 else box_only_session if correction == BOX_ONLY else RefinementSession)
                if args.reach is not None and not oracle:
                    session_class = functools.partial(session_class, reach=args.reach)
                steps = evaluate_clicks(predictor, gt == label, args.clicks, spacing,
                                        correction=("trained-edit" if oracle else "edit" if correction == BOX_ONLY
                                                    else correction),
                                        pipeline=args.pipeline, edge_cut=not args.no_edge_cut,
                                        session_class=session_class, scribbles=args.scribbles)
                dscs = [s.dsc for s in steps] + [steps[-1].dsc] * (args.clicks + 1 - len(steps))
                nsds = [s.nsd for s in steps] + [steps[-1].nsd] * (args.clicks + 1 - len(steps))
                times = [s.slice_seconds for s in steps if s.slice_seconds is not None]
                gains = {key: [getattr(s, key) for s in steps[1:]]
                         for key in ("clicked_gain", "propagated_gain", "local_bound", "changed_slices")}
                entry[correction] = {"dsc": dscs, "nsd": nsds, "dsc_auc": click_auc(dscs),
                                     "nsd_auc": click_auc(nsds), "slice_seconds": times, **gains}
                print(f"{name} label {label} {correction}: " + " ".join(f"{d:.3f}" for d in dscs)
                      + f"  AUC {click_auc(dscs):.3f}", flush=True)
            report["cases"][name]["labels"][str(label)] = entry
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
    if args.encode_only:
        return 0
    summary = summarize(report, args.corrections)
    for correction, s in summary.items():
        print(f"{correction:>8}: DSC " + " ".join(f"{d:.4f}" for d in s["dsc"])
              + f" | DSC_AUC {s['dsc_auc']:.3f} NSD_AUC {s['nsd_auc']:.3f} | slice {s['slice_seconds_median']}")
        print(f"{'':>8}  voxels made right: clicked slices {s['clicked_gain']:+d} (a perfect correction of "
              f"each clicked error region: {s['local_bound']:+d}), re-propagated slices {s['propagated_gain']:+d}; "
              f"{s['clicks_hurting_their_slice']} of {s['clicks']} clicks left their slice worse, "
              f"{s['clicks_changing_nothing']} changed nothing")
    print(f"{'after the last click':<24}" + "".join(f"{c[:18]:>20}" for c in args.corrections))
    for name in summary[args.corrections[0]]["last_dsc_per_case"]:
        print(f"{name[:24]:<24}" + "".join(f"{summary[c]['last_dsc_per_case'][name]:20.4f}"
                                         for c in args.corrections))
    report["summary"] = summary
    report["click_steps"] = {c: click_steps_of(report, c) for c in args.corrections}
    print("each click minus the step before it, paired by structure (bootstrap 95% intervals)")
    for correction, steps in report["click_steps"].items():
        for k, step in enumerate(steps, 1):
            print(f"  {correction}, click {k}: {PairedDifference(**step).describe()}")
    if len(args.corrections) > 1 and any(c["labels"] for c in report["cases"].values()):
        report["differences"] = differences(report, args.corrections)
        print(f"{args.corrections[0]} minus each other correction, paired by structure (bootstrap 95% intervals, "
              "resampling structures; then subjects)")
        for other, parts in report["differences"].items():
            for key, what in (("after_last_click", "after the last click"), ("dsc_auc", "DSC_AUC")):
                print(f"  {other}, {what}: " + describe_both(**parts[key]))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
