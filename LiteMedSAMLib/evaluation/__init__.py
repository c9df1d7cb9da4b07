"""Evaluation and development tooling, apart from the inference core.

- :mod:`.metrics`: DSC and NSD as the CVPR 2024 challenge computes them, and scoring of files.
- :mod:`.clicks`: the CVPR 2025 simulated-click protocol for corrections.
- :mod:`.benchmark`: timing of our modes against the official 3D algorithm.
- :mod:`.suite`: pipelines side by side on the labelled public suite (``evaluate-suite``).
- :mod:`.statistics`: paired differences with bootstrap intervals, by structure and by subject.
- :mod:`.reference`: a literal copy of the official pipeline, the reference for parity tests
  and the benchmark.
"""
