"""Where the exact mode's decoder time goes: OpenVINO's per-operation profile of the
LiteMedSAM prompt encoder + mask decoder (one box, float32), as quoted in the README's Speed
section (re-prompt latency), and the time of the shipped conversion (two-way transformer
channels-first) against SAM's own layout converted the same way, measured in turns in the same
run (the ratio is what to quote; this machine's speed drifts).

    python tools/profile_decoder.py [--runs 50] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections import defaultdict

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import openvino as ov
    import torch

    from LiteMedSAMLib.backends.openvino_backend import _BoxDecoder, _converted
    from LiteMedSAMLib.registry import load_model

    model = load_model()
    shipped, _, _ = _converted(model, "decoder", None)
    rng = np.random.default_rng(0)
    inputs = {0: rng.standard_normal((1, 256, 64, 64)).astype(np.float32),
              1: np.array([[[20, 30, 150, 160]]], np.float32)}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        sam_layout = ov.convert_model(_BoxDecoder(model).eval(),
                                      example_input=tuple(torch.from_numpy(v) for v in inputs.values()))
    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    if args.threads:
        config["INFERENCE_NUM_THREADS"] = args.threads
    core = ov.Core()
    requests = {name: core.compile_model(m, "CPU", config).create_infer_request()
                for name, m in (("shipped", shipped), ("sam", sam_layout))}
    for request in requests.values():
        for _ in range(5):
            request.infer(inputs)
    out = {name: request.infer(inputs)[0].copy() for name, request in requests.items()}
    times: dict[str, list[float]] = defaultdict(list)
    for _ in range(args.runs):  # in turns, so that a drift of the machine hits both
        for name, request in requests.items():
            start = time.perf_counter()
            request.infer(inputs)
            times[name].append(time.perf_counter() - start)
    shipped_ms, sam_ms = (np.median(times[n]) * 1000 for n in ("shipped", "sam"))
    print(f"decoder (one box, f32), median of {args.runs}: shipped (channels-first) {shipped_ms:.1f} ms, "
          f"SAM's layout {sam_ms:.1f} ms: {sam_ms / shipped_ms:.2f}x; logits differ by at most "
          f"{np.abs(out['shipped'] - out['sam']).max():.1e}, signs in "
          f"{int(np.count_nonzero((out['shipped'] > 0) != (out['sam'] > 0)))} of {out['sam'].size} pixels")

    request = core.compile_model(shipped, "CPU", {**config, "PERF_COUNT": "YES"}).create_infer_request()
    for _ in range(5):
        request.infer(inputs)
    totals: dict[str, float] = defaultdict(float)
    for _ in range(args.runs):
        request.infer(inputs)
        for info in request.profiling_info:
            totals[info.node_type] += info.real_time.total_seconds() * 1000 / args.runs
    print(f"shipped decoder, per operation (profiling on): {sum(totals.values()):.1f} ms in operations")
    for kind, ms in sorted(totals.items(), key=lambda kv: -kv[1])[:10]:
        print(f"  {kind:<26} {ms:6.1f} ms")


if __name__ == "__main__":
    main()
