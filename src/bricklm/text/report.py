"""What `bricklm prepare` read, skipped and wrote: the report it prints, and meta.json's contents.

    report = PrepareReport(out="corpus", sources=["_posts"], builtin=None, code="drop", split="documents",
                           split_requested="documents", val_fraction=0.1, seed=1337)
    if report.read(document): ...      # count a document (False: it had no text after cleaning)
    report.skip(skipped)               # a file skipped, or an item left out of an export
    print(report.format())             # the lines prepare prints

Per file: read, skipped (with the reason) or ignored (counted). Per export (a WordPress
export): documents read, and what was left out by reason with the first few names. Per zip:
the files read from it and how many were ignored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from bricklm.text.documents import Document, Skipped
from bricklm.text.tokenizer import CharTokenizer

LIST_LIMIT = 20  # files listed by name in the printed report; meta.json has them all
FIRST_NAMES = 3  # items named per reason an export left them out
MOST_CLEANED = 3  # documents that lost the most characters to cleaning, named in the report to check by eye
NO_TEXT = "no text after cleaning"


@dataclass
class PrepareReport:
    """What prepare read, skipped and wrote. to_dict() is what meta.json holds (plus "out")."""

    out: str
    sources: list[str]
    builtin: str | None
    code: str
    split: str  # the split used; differs from split_requested when one document forces "tail"
    split_requested: str
    val_fraction: float
    seed: int
    images: str = "drop"
    tables: str = "keep"
    titles: str = "drop"
    include_drafts: bool = False
    comments: bool = False
    files_read: list[dict] = field(default_factory=list)  # {"path", "characters"[, "note"]}
    files_skipped: list[dict] = field(default_factory=list)  # {"path", "reason"}
    files_ignored: dict = field(default_factory=dict)  # reason -> count
    ignored_extensions: dict = field(default_factory=dict)  # ".jpg" -> count
    # {"path", "kind", "documents", "characters", "left_out": {reason: {"count", "first": [names]}}}
    exports: list[dict] = field(default_factory=list)
    archives: list[dict] = field(default_factory=list)  # {"path", "files", "ignored"}: each zip read
    documents: int = 0
    characters: int = 0
    tokenizer: str = CharTokenizer.kind
    vocab_size: int = 0
    tokenizer_from: str | None = None  # prepare --tokenizer-from: the run whose tokenizer was reused
    unknown_chars: dict = field(default_factory=dict)  # then: {"mode", "characters" it lacked, "dropped"}
    dtype: str = ""
    split_note: str | None = None
    val_documents: list[str] = field(default_factory=list)
    train_tokens: int = 0
    val_tokens: int = 0
    train_bytes: int = 0  # UTF-8 bytes of each split's text: bits per byte divides by them
    val_bytes: int = 0
    sha256: dict = field(default_factory=dict)
    markup: dict = field(default_factory=dict)  # "links reduced to their text" -> count, over all documents
    most_cleaned: list[dict] = field(default_factory=list)  # {"path", "characters_before", "characters_after"}
    bricklm_version: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    # ------------------------------------------------------------ counting, one item at a time

    def add_export(self, path: str, kind: str) -> None:
        """An export file about to be read, so the report lists it even if nothing in it is read."""
        record = {"path": path, "kind": kind, "documents": 0, "characters": 0, "left_out": {}}
        self.exports.append(record)

    def _export(self, path: str) -> dict:
        found = next((e for e in self.exports if e["path"] == path), None)
        if found is None:  # a reader that did not say it was an export still reports its items
            self.add_export(path, "export")
            found = self.exports[-1]
        return found

    def skip(self, item: Skipped) -> None:
        """A file skipped, or (item.within set) an item left out of an export, by reason."""
        if item.within is None:
            self.files_skipped.append({"path": item.path, "reason": item.reason})
            return
        reason = self._export(item.within)["left_out"].setdefault(item.reason, {"count": 0, "first": []})
        reason["count"] += 1
        if len(reason["first"]) < FIRST_NAMES:
            reason["first"].append(item.path)

    def read(self, doc: Document) -> bool:
        """Count a document's cleaning and record it; False (and skipped) if no text was left."""
        self._count_cleaning(doc)
        if not doc.text:
            self.skip(Skipped(doc.name, NO_TEXT, within=doc.within))
            return False
        if doc.within is not None:
            export = self._export(doc.within)
            export["documents"] += 1
            export["characters"] += len(doc.text)
            if doc.note and doc.note not in export.setdefault("notes", []):  # how a chat's dates were read
                export["notes"].append(doc.note)
            return True
        record = {"path": doc.name, "characters": len(doc.text)}
        if doc.note:
            record["note"] = doc.note
        self.files_read.append(record)
        return True

    def _count_cleaning(self, doc: Document) -> None:
        """Add a document's markup counts, and keep the MOST_CLEANED that lost the most characters."""
        for what, n in doc.markup.items():
            self.markup[what] = self.markup.get(what, 0) + n
        if doc.source_characters > len(doc.text):
            record = {"path": doc.name, "characters_before": doc.source_characters, "characters_after": len(doc.text)}
            ranked = self.most_cleaned + [record]
            ranked.sort(key=lambda d: d["characters_after"] - d["characters_before"])
            self.most_cleaned = ranked[:MOST_CLEANED]

    # ------------------------------------------------------------ the printed report

    def format(self) -> str:
        lines = [f"prepared {self.out}"]
        if self.builtin:
            lines.append(f"source: built-in corpus {self.builtin} ({len(self.files_read)} documents)")
        else:
            notes = [f for f in self.files_read if f.get("note")]
            extra = f" ({len(notes)} decoded with a fallback encoding)" if notes else ""
            if self.files_read or not self.exports:
                lines.append(f"files read: {len(self.files_read)}{extra}")
            lines += _listed([f"{f['path']}: {f['note']}" for f in notes])
            lines += self._sources_summary()
        if self.files_skipped:
            lines.append(f"files skipped: {len(self.files_skipped)}")
            lines += _listed([f"{f['path']}: {f['reason']}" for f in self.files_skipped])
        if self.files_ignored:
            lines.append(f"files ignored: {sum(self.files_ignored.values())} ({self._ignored_summary()})")
        lines += [
            f"documents: {self.documents:,}",
            f"characters: {self.characters:,}",
            f"vocabulary: {self.vocab_size} {'BPE tokens' if self.tokenizer == 'bpe' else 'characters'} "
            f"({self.dtype} token files)",
            *self._reused_summary(),
            f"split: {self._split_summary()}",
            f"train tokens: {self.train_tokens:,}",
            f"val tokens: {self.val_tokens:,}",
        ]
        return "\n".join(lines + self._cleaning_summary())

    def _sources_summary(self) -> list[str]:
        """One line per zip read, and per export its documents and what it left out, by reason."""
        lines = [
            f"{a['path']} (zip archive): {a['files']} files read from it, {a['ignored']} ignored" for a in self.archives
        ]
        for e in self.exports:
            left = sum(r["count"] for r in e["left_out"].values())
            lines.append(f"{e['path']} ({e['kind']}): {e['documents']:,} documents read, {left:,} left out")
            lines += [f"  {note}" for note in e.get("notes", [])]
            for reason, r in sorted(e["left_out"].items(), key=lambda kv: (-kv[1]["count"], kv[0])):
                more = ", ..." if r["count"] > len(r["first"]) else ""
                lines.append(f"  {r['count']:,} {reason}: {', '.join(r['first'])}{more}")
        return lines

    def left_out_summary(self) -> str:
        """ "draft 3, revision 2, ..." over every export: what they left out, most first (for an error line)."""
        totals: dict[str, int] = {}
        for e in self.exports:
            for reason, r in e["left_out"].items():
                totals[reason] = totals.get(reason, 0) + r["count"]
        return ", ".join(f"{n} {reason}" for reason, n in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])))

    def _cleaning_summary(self) -> list[str]:
        lines = []
        if self.markup:
            lines.append("markup removed or converted:")
            lines += [f"  {what}: {n:,}" for what, n in sorted(self.markup.items(), key=lambda kv: (-kv[1], kv[0]))]
        if self.most_cleaned:
            lines.append("most text removed by cleaning (see one with: bricklm prepare --explain FILE):")
            for doc in self.most_cleaned:
                before, after = doc["characters_before"], doc["characters_after"]
                lines.append(f"  {doc['path']}: {before - after:,} of {before:,} characters ({1 - after / before:.0%})")
        return lines

    def _ignored_summary(self) -> str:
        parts = []
        for reason, count in sorted(self.files_ignored.items()):
            if reason == "extension":
                by_ext = ", ".join(f"{ext} {n}" for ext, n in sorted(self.ignored_extensions.items()))
                parts.append(f"extension: {by_ext}")
            else:
                parts.append(f"{reason}: {count}")
        return "; ".join(parts)

    def _reused_summary(self) -> list[str]:
        """With --tokenizer-from: whose tokenizer, and what became of the characters it lacked."""
        if not self.tokenizer_from:
            return []
        unknown = self.unknown_chars
        chars = unknown.get("characters", [])
        shown = "".join(chars[:40]) + ("..." if len(chars) > 40 else "")
        mode = unknown.get("mode")
        if not chars:
            what = "it knows every character of this writing" + (" (byte-level BPE)" * (self.tokenizer == "bpe"))
        elif mode == "add":
            what = f"{len(chars)} characters it lacked added as new tokens after its own: {shown!r}"
        else:
            what = f"{len(chars)} characters it lacked dropped ({unknown.get('dropped', 0):,} in all): {shown!r}"
        return [f"tokenizer: reused from {self.tokenizer_from}; {what}"]

    def _split_summary(self) -> str:
        tokens = self.train_tokens + self.val_tokens
        share = f"{self.val_tokens / tokens:.1%}" if tokens else "0%"
        if self.split == "documents":
            text = (
                f"documents, seed {self.seed}: {len(self.val_documents)} of {self.documents} "
                f"documents held out ({share} of the tokens)"
            )
        else:
            text = f"tail: the last {share} of the text held out"
        return text + (f"; {self.split_note}" if self.split_note else "")


def _listed(items: list[str]) -> list[str]:
    shown = [f"  {item}" for item in items[:LIST_LIMIT]]
    if len(items) > LIST_LIMIT:
        shown.append(f"  ... and {len(items) - LIST_LIMIT} more (see meta.json)")
    return shown
