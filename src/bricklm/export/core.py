"""The only module of `bricklm.export` that imports bricklm's core.

The core is being reorganised (the tokenizers will move into `bricklm.tokenizer`); keeping
every such import here makes that a one-line change for this package.
"""

from __future__ import annotations

from bricklm import __version__
from bricklm.bpe import BPETokenizer
from bricklm.chat_data import ASSISTANT, END, ROLE_TOKEN, SPECIALS, ChatTokenizer
from bricklm.config import ModelConfig
from bricklm.errors import UserError
from bricklm.model import GPT
from bricklm.runs import load_run
from bricklm.tokenizer import CharTokenizer, tokenizer_from_dict

__all__ = [
    "ASSISTANT",
    "BPETokenizer",
    "CharTokenizer",
    "ChatTokenizer",
    "END",
    "GPT",
    "ModelConfig",
    "ROLE_TOKEN",
    "SPECIALS",
    "UserError",
    "__version__",
    "load_run",
    "tokenizer_from_dict",
]
