"""Where the exact mode's decoder time goes: OpenVINO's per-operation profile of the
LiteMedSAM prompt encoder + mask decoder (one box, float32), as quoted in the README's Speed
section (re-prompt latency).

    python tools/profile_decoder.py [--runs 50]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import openvino as ov

    from LiteMedSAMLib.backends.openvino_backend import _converted
    from LiteMedSAMLib.registry import load_model

    model = load_model()
    ov_model, _, _ = _converted(model, "decoder", None)
    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": "YES"}
    if args.threads:
        config["INFERENCE_NUM_THREADS"] = args.threads
    request = ov.Core().compile_model(ov_model, "CPU", config).create_infer_request()
    rng = np.random.default_rng(0)
    inputs = {0: rng.standard_normal((1, 256, 64, 64)).astype(np.float32),
              1: np.array([[[20, 30, 150, 160]]], np.float32)}
    for _ in range(5):
        request.infer(inputs)
    totals: dict[str, float] = defaultdict(float)
    start = time.perf_counter()
    for _ in range(args.runs):
        request.infer(inputs)
        for info in request.profiling_info:
            totals[info.node_type] += info.real_time.total_seconds() * 1000 / args.runs
    wall = (time.perf_counter() - start) / args.runs * 1000
    print(f"decoder (one box, f32): {wall:.1f} ms per call (profiling on), "
          f"{sum(totals.values()):.1f} ms in operations")
    for kind, ms in sorted(totals.items(), key=lambda kv: -kv[1])[:10]:
        print(f"  {kind:<26} {ms:6.1f} ms")


if __name__ == "__main__":
    main()
