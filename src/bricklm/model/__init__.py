"""The GPT and everything that runs it.

attention.py  causal self-attention: the mask and softmax, the kernels, rotary positions, the two modules, KV cache
gpt.py        the model, bottom-up as in the papers: feed-forward, block, GPT; its trace (streams, attention weights)
decode.py     the fused single-token decode step (a fast path beside GPT.forward with a cache)
generate.py   sampling: temperature, top-k, top-p, the context-window rule, streaming
vocab.py      a trained model's vocabulary grown (finetune's special tokens, train --init-from's new characters)
fastpaths.py  torch.compile and the compiled attention kernel, each with its eager fallback
"""
