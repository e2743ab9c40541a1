"""Your writing, made ready to train on: finding and cleaning it, tokenizers, token files, `prepare`.

corpus.py         finding the files under a source and reading them as documents
markup.py         markup to prose (dispatches to the two below)
markdown_text.py  Markdown through markdown-it-py, written back as the text a reader reads
html_text.py      HTML through html.parser, the same way
streaming.py      what keeps prepare's memory bounded on corpora bigger than memory
tokenizer.py      char, word and byte-level BPE tokenizers behind one interface, saved as JSON
data.py           token files (train.bin, val.bin), splits and batches
prepare.py        `bricklm prepare`: writing in, a corpus folder out
"""
