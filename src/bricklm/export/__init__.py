"""Take a run anywhere: Hugging Face transformers (a folder) and llama.cpp (a GGUF file), in GPT-2's layout.

run.py       export_run(): refusals, the destination, atomic placement
weights.py   a bricklm GPT's weights in GPT-2's layout, the head bias folded in
vocab.py     the tokenizer for transformers and the vocabulary for llama.cpp
hf.py        the transformers folder
gguf.py      the llama.cpp file (needs the optional gguf package)
"""

from bricklm.export.run import export_run

__all__ = ["export_run"]
