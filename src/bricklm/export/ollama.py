"""An Ollama folder: the GGUF file, a Modelfile and a README with the one `ollama create` line to run.

    write_ollama(run, folder, final, provenance)   # Modelfile and README.md beside GGUF_NAME; returns notes

Ollama imports a GGUF whose architecture its engine knows (`FROM ./model.gguf`); gguf.py writes one of
llama.cpp's stock architectures. The Modelfile says what the GGUF alone does not: how to turn a
conversation into the run's text (TEMPLATE, in Ollama's Go template language: the same text
vocab.chat_template renders for transformers, so a fine-tuned run sees its own format), where a reply
ends (PARAMETER stop), and bricklm's sampling defaults, with Ollama's own extras (top-k 40, top-p 0.9,
repeat penalty 1.1) switched off so that it samples as `bricklm sample` and `bricklm chat` do. A base
run's template is the prompt itself: it continues text.
"""

from __future__ import annotations

import re
from pathlib import Path

from bricklm.text.tokenizer import ASSISTANT, END, ROLE_TOKEN, ChatTokenizer

MARK = "# Written by bricklm export"  # the Modelfile's first line: how --overwrite knows the folder is ours
GGUF_NAME = "model.gguf"
TEMPERATURE = {"base": 0.8, "chat": 0.7}  # `bricklm sample` and `bricklm chat`'s defaults


def model_name(run_name: str) -> str:
    """A name `ollama create` accepts (lower-case letters, digits, '.', '_', '-'), from the run's folder name."""
    name = re.sub(r"[^a-z0-9._-]+", "-", run_name.lower()).strip("-._")
    return name or "bricklm-model"


def go_template() -> str:
    """vocab.chat_template's rendering in Ollama's Go template language: role token, content, END; then ASSISTANT."""
    roles = "".join(
        f'{{{{ {"if" if i == 0 else "else if"} eq .Role "{role}" }}}}{token}'
        for i, (role, token) in enumerate(ROLE_TOKEN.items())
    )
    return "{{- range .Messages }}" + roles + "{{ end }}{{ .Content }}" + END + "{{ end }}" + ASSISTANT


def modelfile(provenance: dict, chat: bool, context: int) -> str:
    lines = [
        f"{MARK} ({provenance['exported_by']}) from run {provenance['run']}, {provenance['checkpoint']}.",
        f"FROM ./{GGUF_NAME}",
        f'TEMPLATE """{go_template() if chat else "{{ .Prompt }}"}"""',
    ]
    if chat:
        lines.append(f'PARAMETER stop "{END}"')
    lines += [
        f"PARAMETER temperature {TEMPERATURE['chat' if chat else 'base']}",
        "PARAMETER top_k 0",
        "PARAMETER top_p 1.0",
        "PARAMETER repeat_penalty 1.0",
        f"PARAMETER num_ctx {context}",
    ]
    return "\n".join(lines) + "\n"


def create_line(folder: Path, name: str) -> str:
    return f"ollama create {name} -f {folder / 'Modelfile'}"


def readme(name: str, final: Path, provenance: dict, chat: bool) -> str:
    use = f"ollama run {name}" + ("" if chat else ' "The first line of a post"')
    kind = "a fine-tuned chat model" if chat else "a base model: it continues the text you give it"
    return (
        f"# {name}\n\n"
        f"Exported by {provenance['exported_by']} from the run `{provenance['run']}` ({provenance['checkpoint']}), "
        f"{kind}.\n\n"
        "Import it into Ollama, then run it:\n\n"
        f"    {create_line(final, name)}\n"
        f"    {use}\n\n"
        f"`{GGUF_NAME}` is a plain GGUF for llama.cpp and the tools built on it; `Modelfile` holds the prompt "
        "template, stop token and sampling defaults.\n"
    )


def write_ollama(run, folder: Path, final: Path, provenance: dict) -> list[str]:
    """The Modelfile and README.md into folder (renamed to `final` afterwards), beside the GGUF (GGUF_NAME)."""
    chat = isinstance(run.tokenizer, ChatTokenizer)
    (folder / "Modelfile").write_text(modelfile(provenance, chat, run.model_cfg.block_size), encoding="utf-8")
    name = model_name(provenance["run"])
    (folder / "README.md").write_text(readme(name, final, provenance, chat), encoding="utf-8")
    return [f"to use it in Ollama: {create_line(final, name)}"]
