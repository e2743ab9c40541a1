"""What a run leaves on disk, and reading it back.

checkpoint.py  atomic checkpoints: safetensors for tensors, JSON for the rest, never pickle
runs.py        a run directory: its configs, summary and a loaded model
metrics.py     metrics.jsonl and samples.jsonl: the one writer and reader of their lines, whole or as they grow
snapshots.py   the weights saved when val loss first fell below each level
plots.py       matplotlib figures straight to PNG
"""
