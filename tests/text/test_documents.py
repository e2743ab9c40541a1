"""Documents and titles (bricklm.text.documents): a title is dropped by default for every source, and with
--titles keep it is each document's first line, whatever the source."""

import pytest

from bricklm.cli import main
from bricklm.text.documents import titled
from bricklm.text.markup import front_matter_title
from exporthelp import notebook, post, wxr


def test_titled_puts_the_title_on_the_first_line_only_when_kept():
    assert titled("Body.", "Title", "keep") == "Title\n\nBody."
    assert titled("Body.", "Title", "drop") == "Body."
    assert titled("Body.", None, "keep") == "Body."
    assert titled("", "Only a title", "keep") == "Only a title"


@pytest.mark.parametrize(
    "text, title",
    [
        ('---\nlayout: post\ntitle: "First post"\n---\nBody', "First post"),
        ("---\ntitle: It's: a colon\n---\nBody", None),  # YAML that doesn't parse: no title, the post is still read
        ("---\ntitle: >\n  Folded\n  title\n---\n", "Folded title\n"),
        ("---\ntitle: 2024\n---\n", "2024"),
        ("---\ntitle: [a, b]\n---\n", None),
        ("---\nlayout: post\n---\nBody", None),
        ('+++\ntitle = "Hugo post"\ndraft = false\n+++\nBody', "Hugo post"),
        ("No front matter.\ntitle: x", None),
        ("---\ntitle: never closed\n", None),
    ],
)
def test_front_matter_title(text, title):
    assert front_matter_title(text) == title


def make_sources(root):
    src = root / "src"
    src.mkdir()
    (src / "a-post.md").write_text('---\ntitle: "A   Markdown post"\n---\nMarkdown body.')
    (src / "b-page.html").write_text("---\ntitle: An HTML page\n---\n<p>HTML body.</p>")
    (src / "c-plain.txt").write_text("title: not front matter\nPlain body.")
    (src / "d-notebook.ipynb").write_text(notebook([("markdown", "# A notebook\n\nNotebook body.")]))
    (src / "e-export.xml").write_text(wxr([post("A WordPress post", "<p>WordPress body.</p>")]))
    return src


@pytest.mark.parametrize("titles", ["drop", "keep"])
def test_titles_are_the_same_for_every_source(tmp_path, titles):
    src = make_sources(tmp_path)
    flags = [] if titles == "drop" else ["--titles", "keep"]
    assert main(["prepare", str(src), "--out", str(tmp_path / "out"), *flags]) == 0
    docs = (tmp_path / "out" / "corpus.txt").read_text().split("\n\n")
    if titles == "drop":
        assert docs == [
            "Markdown body.",
            "HTML body.",
            "title: not front matter\nPlain body.",
            "Notebook body.",
            "WordPress body.",
        ]
    else:
        assert docs == [
            "A Markdown post",
            "Markdown body.",
            "An HTML page",
            "HTML body.",
            "title: not front matter\nPlain body.",
            "A notebook",
            "Notebook body.",
            "A WordPress post",
            "WordPress body.",
        ]
