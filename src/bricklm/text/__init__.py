"""Your writing, made ready to train on: finding, reading and cleaning it, tokenizers, token files, `prepare`.

corpus.py         finding the files under a source (folders, zips) and reading them as documents
readers/          one reader per kind of source: Markdown/HTML/text files, WordPress exports, notebooks
archive.py        zips read in place, each member through a guard against zip bombs
documents.py      Document and Skipped, and clean(): a document's text made prose
markup.py         markup to prose (dispatches to the two below)
markdown_text.py  Markdown through markdown-it-py, written back as the text a reader reads
obsidian.py       Obsidian's wikilinks, embeds, callouts and comments, as markdown-it-py rules
html_text.py      HTML through html.parser, the same way
shortcodes.py     WordPress shortcodes ([caption], [gallery], ...) in a post's HTML
streaming.py      what keeps prepare's memory bounded on corpora bigger than memory
tokenizer.py      char, word and byte-level BPE tokenizers behind one interface, saved as JSON
data.py           token files (train.bin, val.bin), splits and batches
report.py         what prepare read, skipped and wrote: the printed report and meta.json
prepare.py        `bricklm prepare`: writing in, a corpus folder out
"""
