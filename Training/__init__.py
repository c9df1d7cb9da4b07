"""Training/: produce the LiteMedSAM model family on your own data and GPUs.

Stages (each a module with a command line; ``python -m Training.<stage> --help``):
``prepare`` (volumes or challenge npz -> 2D slices), ``distill`` (stage 1: student encoder
regresses the teacher's stored embeddings), ``finetune`` (stage 2: encoder + decoder with
Dice + BCE + IoU loss), ``export`` (re-parameterize / quantize, weights + registry manifest),
and ``run`` (stages 1, 2 and export from one recipe). See Training/README.md.
"""
