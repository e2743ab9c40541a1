"""Cleaning rules and file gathering (bricklm.text.corpus)."""

import json
import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from bricklm.errors import UserError
from bricklm.text.corpus import Document, Skipped, builtin_documents, clean, decode, read_document, scan_sources

# ---------------------------------------------------------------- front matter


def test_yaml_front_matter_at_start_is_removed():
    assert clean("---\nlayout: post\ntitle: Hi\n---\nBody text.\n") == "Body text."


def test_toml_front_matter_at_start_is_removed():
    assert clean('+++\ntitle = "Hi"\n+++\nBody text.\n') == "Body text."


def test_horizontal_rule_in_body_keeps_the_rest_of_the_post():
    post = "---\ntitle: Hi\n---\nFirst part.\n\n---\n\nSecond part.\n\n---\nThird part.\n"
    assert clean(post) == "First part.\n\n---\n\nSecond part.\n\n---\nThird part."


def test_dashes_not_at_the_start_are_not_front_matter():
    # Every line stays; the dashes underline setext headings, which lose them as "#" headings lose "#".
    assert clean("Intro.\n---\nkey: value\n---\nMore.") == "Intro.\nkey: value\nMore."


def test_unclosed_front_matter_is_left_alone():
    assert clean("---\nJust a rule and text") == "---\nJust a rule and text"


# ---------------------------------------------------------------- Liquid


def test_liquid_tags_and_outputs_are_removed():
    text = "Hello {{ site.title }} there.\n{% include note.html %}\nBye {%- assign x = 1 -%}now."
    assert clean(text) == "Hello  there.\n\nBye now."


def test_highlight_block_is_removed_with_its_content():
    text = 'Before.\n\n{% highlight ruby %}\nputs "secret"\n{% endhighlight %}\n\nAfter.'
    assert clean(text) == "Before.\n\nAfter."


def test_highlight_block_content_is_kept_with_code_keep():
    text = 'Before.\n{% highlight ruby %}\nputs "<b>"\n{% endhighlight %}\nAfter.'
    assert clean(text, code="keep") == 'Before.\n\nputs "<b>"\n\nAfter.'


def test_raw_block_keeps_its_content_literally():
    assert clean("Write {% raw %}{{ page.title }}{% endraw %} in a layout.") == "Write {{ page.title }} in a layout."


def test_liquid_comment_block_is_removed():
    assert clean("A{% comment %} hidden {{ x }} {% endcomment %}B") == "AB"


def test_a_stray_liquid_opener_does_not_eat_past_a_blank_line():
    assert clean("Sets use {{ braces.\n\nNext paragraph }} stays.") == "Sets use {{ braces.\n\nNext paragraph }} stays."


# ---------------------------------------------------------------- HTML


def test_html_tags_are_stripped_keeping_their_text():
    assert clean('Some <em>bold</em> and <a href="x.html" title="a > b">linked</a> words.') == (
        "Some bold and linked words."
    )


def test_block_tags_become_line_breaks():
    assert clean("<p>One</p><p>Two</p>", "html") == "One\n\nTwo"


def test_html_comments_are_removed():
    assert clean("Keep <!-- drop\nthis --> this.") == "Keep  this."


def test_script_and_style_contents_are_dropped():
    text = "A<script type='text/javascript'>var s = `<b>`;</script>B<STYLE>p { color: red }</STYLE>C"
    assert clean(text) == "ABC"


def test_html_entities_are_decoded_after_tags_are_stripped():
    assert clean("Tom &amp; Jerry &lt;b&gt; &#233;t&#xE9; &quot;q&quot;") == 'Tom & Jerry <b> été "q"'


def test_ampersand_without_semicolon_is_not_an_entity():
    assert clean("see ?a=1&para=2 and AT&T") == "see ?a=1&para=2 and AT&T"


def test_inline_code_keeps_tags_and_entities():
    assert clean("Use `<br>` or `&amp;` here.") == "Use `<br>` or `&amp;` here."


def test_html_file_drops_head_markup():
    page = "<!DOCTYPE html><html><head><style>x{}</style></head><body><h1>Title</h1><p>Text &copy; me</p></body></html>"
    assert clean(page, "html") == "Title\n\nText © me"


# ---------------------------------------------------------------- images and links


def test_markdown_and_html_images_are_removed():
    assert clean('A ![a cat](cat.png "Cat") B <img src="x.png" alt="x"/> C') == "A  B  C"


def test_inline_links_are_reduced_to_their_text():
    assert clean("See [my post](/2020/01/post.html) and [Wiki](https://en.wikipedia.org/wiki/A_(b)).") == (
        "See my post and Wiki."
    )


def test_reference_links_keep_text_and_definitions_are_dropped():
    text = 'Read [the docs][docs], [this][] and [Docs].\n\n[docs]: https://example.com "Title"\n[this]: /x\n'
    assert clean(text) == "Read the docs, this and Docs."


def test_unknown_bracketed_text_is_kept():
    assert clean("An array [1, 2] and [a label] here.") == "An array [1, 2] and [a label] here."


def test_linked_image_leaves_nothing():
    assert clean("Badge: [![build](b.svg)](https://ci) done.") == "Badge:  done."


def test_autolink_keeps_the_address():
    assert clean("Mail <mailto:me@x.org> or <https://x.org/a>.") == "Mail mailto:me@x.org or https://x.org/a."


# ---------------------------------------------------------------- normalisation


def test_blank_line_runs_collapse_to_one_blank_line():
    assert clean("a\n\n\n\n\nb\n \n\t\n\nc\n\n") == "a\n\nb\n\nc"


def test_trailing_spaces_are_stripped():
    assert clean("a  \nb\t\n") == "a\nb"


def test_unicode_is_nfc_normalised():
    decomposed = "cafe\u0301"
    assert clean(decomposed) == "caf\u00e9"
    assert unicodedata.is_normalized("NFC", clean("An\u0303o &#101;&#769;"))


def test_crlf_and_cr_become_lf():
    assert clean("---\r\ntitle: x\r\n---\r\nOne\r\nTwo\rThree\r\n") == "One\nTwo\nThree"


def test_bom_is_removed():
    assert clean("\ufeff---\ntitle: x\n---\nText") == "Text"


def test_plain_text_is_only_normalised():
    assert clean("<b>{{x}}</b> [a](b) &amp;\r\n\n\n\nend  ", "text") == "<b>{{x}}</b> [a](b) &amp;\n\nend"


# ---------------------------------------------------------------- code blocks

POST_WITH_CODE = """Intro:

```python
x = "<b>[a](b)</b>"
```

Middle.

~~~
tilde code
~~~

End."""


def test_fenced_code_is_dropped_by_default():
    assert clean(POST_WITH_CODE) == "Intro:\n\nMiddle.\n\nEnd."


def test_fenced_code_is_kept_verbatim_with_code_keep():
    assert clean(POST_WITH_CODE, code="keep") == POST_WITH_CODE


def test_fence_closes_only_on_a_matching_fence():
    text = "A\n````\n```\ninner\n```\n````\nB"
    assert clean(text) == "A\n\nB"
    assert clean(text, code="keep") == text


def test_unclosed_fence_runs_to_the_end():
    assert clean("A\n```\nnever closed\n\nstill code") == "A"


def test_triple_backticks_inline_are_not_a_fence():
    assert clean("Use ```code``` inline.\nNext.") == "Use ```code``` inline.\nNext."


def test_bad_code_mode_is_a_user_error():
    with pytest.raises(UserError, match="code must be one of"):
        clean("x", code="maybe")


# ---------------------------------------------------------------- reading files


def test_decode_falls_back_from_utf8_to_cp1252_to_latin1():
    assert decode("café".encode()) == ("café", "utf-8")
    assert decode("“quoted” café".encode("cp1252")) == ("“quoted” café", "cp1252")
    assert decode(b"\x81\xe9") == ("\x81é", "latin-1")  # 0x81 is undefined in cp1252


def test_read_document_reports_cp1252_fallback(tmp_path):
    path = tmp_path / "old.md"
    path.write_bytes("It’s a “test”.".encode("cp1252"))
    doc = read_document(path)
    assert isinstance(doc, Document)
    assert doc.text == "It’s a “test”."
    assert doc.note == "decoded as cp1252 (not valid UTF-8)"


def test_read_document_reads_utf16_with_bom(tmp_path):
    path = tmp_path / "win.txt"
    path.write_bytes("\ufeffHello".encode("utf-16-le"))
    assert read_document(path) == Document(str(path), "Hello", None)


def test_binary_file_is_skipped(tmp_path):
    path = tmp_path / "image.md"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert read_document(path) == Skipped(str(path), "binary (NUL byte in the first 8 KB)")


def test_unreadable_file_is_skipped(tmp_path, monkeypatch):
    path = tmp_path / "locked.md"
    path.write_text("secret")
    real_read_bytes = Path.read_bytes

    def read_bytes(self):
        if self.name == "locked.md":
            raise PermissionError(13, "Permission denied")
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    assert read_document(path) == Skipped(str(path), "unreadable (Permission denied)")


# ---------------------------------------------------------------- scanning folders


def test_scan_finds_text_files_recursively_sorted_by_path(tmp_path):
    for name in ["b.md", "a/z.txt", "a/b/c.html", "A.markdown", "c.htm", "x.jpg", "y.yml", "Makefile", ".hidden.md"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    scan = scan_sources([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in scan.files] == [
        "A.markdown",
        "a/b/c.html",
        "a/z.txt",
        "b.md",
        "c.htm",
    ]
    assert scan.ignored == {"extension": 3, "hidden": 1}
    assert scan.ignored_extensions == {".jpg": 1, ".yml": 1, "(none)": 1}


def test_scan_lists_a_file_once_even_if_named_twice(tmp_path):
    (tmp_path / "a.md").write_text("x")
    assert scan_sources([tmp_path, tmp_path / "a.md"]).files == [tmp_path / "a.md"]


def test_scan_missing_source_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such file or folder: .*nope"):
        scan_sources([tmp_path / "nope"])


def test_scan_skips_broken_symlinks_and_symlink_loops(tmp_path):
    (tmp_path / "ok.md").write_text("x")
    os.symlink(tmp_path / "missing.md", tmp_path / "broken.md")
    os.symlink(tmp_path / "loop.md", tmp_path / "loop.md")
    os.symlink(tmp_path, tmp_path / "again")  # a folder that contains itself
    scan = scan_sources([tmp_path])
    assert scan.files == [tmp_path / "ok.md"]
    reasons = {Path(s.path).name: s.reason for s in scan.skipped}
    assert reasons == {
        "broken.md": "broken symlink",
        "loop.md": "symlink loop",
        "again": "symlink to a folder already read",
    }


def test_scan_excludes_the_output_folder(tmp_path):
    (tmp_path / "post.md").write_text("x")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "corpus.txt").write_text("old corpus")
    scan = scan_sources([tmp_path], exclude=[tmp_path / "out"])
    assert scan.files == [tmp_path / "post.md"]
    assert scan.ignored == {"output folder": 1}


def test_scan_skips_unreadable_folder(tmp_path, monkeypatch):
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "a.md").write_text("x")
    real_iterdir = Path.iterdir

    def iterdir(self):
        if self.name == "locked":
            raise PermissionError(13, "Permission denied")
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    scan = scan_sources([tmp_path])
    assert scan.files == []
    assert scan.skipped == [Skipped(str(tmp_path / "locked"), "folder unreadable (Permission denied)")]


# ---------------------------------------------------------------- built-in


def test_builtin_python_docs_are_topics_sorted_by_name():
    docs = list(builtin_documents("python-docs"))
    names = [d.name for d in docs]
    assert len(docs) > 50 and names == sorted(names)
    assert all(n.startswith("python-docs:") for n in names)
    assert "assert" in next(d.text for d in docs if d.name == "python-docs:assert")


def test_unknown_builtin_is_a_user_error():
    with pytest.raises(UserError, match="unknown built-in corpus"):
        next(builtin_documents("shakespeare"))


OPENERS = [
    ("{{ ", True),
    ("{% ", True),
    ("<!-- ", True),
    ("<script>", False),
    ("![", True),
    ("<!X ", True),
    ('<a x="', True),
]
HTML_OPENERS = ["<a ", '<a x="', "<!--", "<![CDATA[", "<a\n", "</", "<?"]
LINEAR = """
import json, sys
from bricklm.text.corpus import clean
cases = json.loads(sys.argv[1])
out = [clean(unit * 20000, kind) for unit, kind in cases]
out += [clean("<div>\\n" + unit * 20000) for unit, kind in cases if kind == "html"]
print(json.dumps(out))
"""


def test_unclosed_openers_clean_in_linear_time():
    """Rescanning to the end from every unclosed opener took 30-40 s per case; linear takes milliseconds.

    The cases run in one child process with a generous limit: a guard against that hang, not a timing test.
    """
    cases = [(unit, "markdown") for unit, _ in OPENERS] + [(unit, "html") for unit in HTML_OPENERS]
    done = subprocess.run(
        [sys.executable, "-c", LINEAR, json.dumps(cases)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    expected = [(unit * 20000).strip() if kept else "" for unit, kept in OPENERS]
    expected += [(unit * 20000).strip() for unit in HTML_OPENERS] * 2  # alone, and as an HTML block in Markdown
    assert out == expected
