"""The GPT and everything that runs it.

gpt.py        the model, bottom-up as in the papers: attention, feed-forward, block, GPT, KV cache
decode.py     the fused single-token decode step (a fast path beside GPT.forward with a cache)
generate.py   sampling: temperature, top-k, top-p, the context-window rule, streaming
fastpaths.py  torch.compile and the compiled attention kernel, each with its eager fallback
"""
