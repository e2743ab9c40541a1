"""Markup to prose (bricklm.text.markup, markdown_text, html_text) and the cleaning report of prepare."""

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bricklm.cli import main
from bricklm.errors import UserError
from bricklm.text.corpus import clean, clean_document, explain
from bricklm.text.markup import to_prose
from bricklm.text.prepare import prepare


def quiet(*_):
    pass


# A kramdown post with each construct that the regex cleaner let through on a real Jekyll blog.
KRAMDOWN_POST = """---
layout: post
title: "Every construct"
description: A post that uses them all
---
![Portrait of the author](/assets/me.jpg)
{: .float-end .ms-3 .border }

- Table of Contents {:toc}

Intro with a [link](https://example.com){: data-proofer-ignore="true"}, a note[^1] and
a named note [^named]. A marker with no note[^9] goes too.

## Plain *emphasis* and **strong** and ~~struck~~

Set `termCode=[YYYY][01=spring, 02=summer, 03=fall]` and `[a](b)` or `<br>` as written.
Escapes resolve: [w\\]ell and \\*not emphasis\\*. Entities too: AT&amp;T &copy; 2024.
Shortcodes: done :heavy_check_mark: party :tada: but :not_an_emoji: stays.
Press <kbd>Ctrl</kbd>+<kbd>C</kbd>.<!-- hidden -->

| Tool | Open | Notes |
| :--- | :---: | ---: |
| GitHub | :heavy_check_mark: | fast, simple |
| Email | :x: | |
{: .table }

Site: {{ site.title }} by {% if page.author %}someone{% endif %}.
{% include callout.html content=update %}
{% capture update %}Captured prose stays.{% endcapture %}

{% for post in site.posts %}
- **[{{ post.title }}]({{ post.url }})** — {{ post.date }}
{% endfor %}

Write {% raw %}{{ page.title }}{% endraw %} in a layout.

<div class="callout">
An <em>HTML</em> block &amp; its text.
</div>

---

After the rule.

> A quote with a note.[^named]

1. First
2. Second
   - nested *item*

Term
: Its definition.

```ruby
puts "{{ not liquid here }}"
```

[^1]: The first note, with *emphasis* and a [link](https://x.org).

[^named]: A named note.

    Its second paragraph.
"""

KRAMDOWN_PROSE = """Intro with a link, a note and
a named note. A marker with no note goes too.

Plain emphasis and strong and struck

Set `termCode=[YYYY][01=spring, 02=summer, 03=fall]` and `[a](b)` or `<br>` as written.
Escapes resolve: [w]ell and *not emphasis*. Entities too: AT&T © 2024.
Shortcodes: done \u2714\ufe0f party \U0001f389 but :not_an_emoji: stays.
Press Ctrl+C.

Tool; Open; Notes
GitHub; \u2714\ufe0f; fast, simple
Email; \u274c

Site:  by someone.

Captured prose stays.

Write {{ page.title }} in a layout.

An HTML block & its text.

---

After the rule.

> A quote with a note.

1. First
2. Second
   - nested item

Term
Its definition.

The first note, with emphasis and a link.

A named note.

Its second paragraph."""

LEFTOVER_MARKUP = {
    "attribute list": re.compile(r"\{:"),
    "footnote marker": re.compile(r"\[\^"),
    "table rule or pipe row": re.compile(r"^\s*\||\|\s*:?-{3,}"),
    "front matter": re.compile(r"^(layout|title|description):"),
    "heading marker": re.compile(r"^#+ "),
    "emphasis": re.compile(r"\*\*|~~|\*emphasis\*"),
    "emoji shortcode": re.compile(r":(heavy_check_mark|tada|x):"),
}


def test_kramdown_post_becomes_prose_line_by_line(tmp_path):
    (tmp_path / "posts").mkdir()
    (tmp_path / "posts" / "2024-01-01-every-construct.md").write_text(KRAMDOWN_POST, encoding="utf-8")
    report = prepare([tmp_path / "posts"], tmp_path / "data", log=quiet)
    corpus = (tmp_path / "data" / "corpus.txt").read_text(encoding="utf-8")
    assert corpus.split("\n") == KRAMDOWN_PROSE.split("\n")
    for line in corpus.split("\n"):
        code_free = re.sub(r"`[^`]*`", "", line)
        for kind, pattern in LEFTOVER_MARKUP.items():
            assert not pattern.search(code_free), f"{kind} left in {line!r}"
    assert report.markup == {
        "front matter removed": 1,
        "Liquid tags and blocks removed": 12,
        "attribute lists removed": 3,
        "table-of-contents lists removed": 1,
        "images dropped": 1,
        "links reduced to their text": 3,
        "heading markers removed": 1,
        "emphasis markers removed": 6,
        "footnote markers removed": 4,
        "footnote texts moved to the end": 2,
        "backslash escapes resolved": 3,
        "entities decoded": 2,
        "emoji shortcodes turned into emoji": 4,
        "HTML tags removed": 8,
        "HTML comments removed": 1,
        "table rows written as lines": 3,
        "code blocks dropped": 1,
    }


def test_flags_keep_alt_text_and_code_and_drop_tables():
    text = clean(KRAMDOWN_POST, code="keep", images="alt", tables="drop")
    lines = text.split("\n")
    assert lines[:2] == ["Portrait of the author", ""]
    assert not any("GitHub" in line or "Tool" in line for line in lines)
    assert '```ruby\nputs "{{ not liquid here }}"\n```' in text  # Liquid inside fenced code is the writer's code
    counts = clean_document(KRAMDOWN_POST, code="keep", images="alt", tables="drop").counts
    assert counts["images replaced by their alt text"] == 1 and counts["table rows dropped"] == 3
    assert counts["code blocks kept"] == 1


def test_bad_option_values_are_user_errors():
    with pytest.raises(UserError, match="images must be one of drop, alt"):
        clean("x", images="keep")
    with pytest.raises(UserError, match="tables must be one of keep, drop"):
        to_prose("x", tables="csv")


# ---------------------------------------------------------------- one construct at a time


@pytest.mark.parametrize(
    "markdown, prose",
    [
        ("Para.\n{: .lead}\nNext para.", "Para.\n\nNext para."),
        ("{: .lead}\nPara.", "Para."),
        ("*Emphasis*{: .x} and [a link](u){:target='_blank'}.", "Emphasis and a link."),
        ("* TOC\n{:toc}\n\n## Heading", "Heading"),
        ("- Contents {:toc}\n  - nested\n\nText.", "Text."),
        ("{: not closed on this line\n}", "{: not closed on this line\n}"),
        ("[spam](u){ data-proofer-ignore=true }. `x`{.py} {not=attrs} x{#id}", "spam. `x` {not=attrs} x{#id}"),
        ("A[^a] b[^b].\n\n[^b]: Bee.\n[^a]: Ay.", "A b.\n\nAy.\n\nBee."),
        ("Never defined [^7].", "Never defined."),
        ("```\ncode with [^1] and {: .x}\n```\n\nText.", "Text."),
        ("`` `tick` `` and ` padded `", "`` `tick` `` and ` padded `"),
        ("One\\\nTwo  \nThree", "One\nTwo\nThree"),
        ("| a | b |\n|---|---|\n| 1 | 2 |", "a, b\n1, 2"),
        ("| a | b,c |\n|---|---|\n| 1 | |", "a; b,c\n1"),
        ("Time 10:30:00 and :smile: and \\:smile:", "Time 10:30:00 and \U0001f604 and :smile:"),
        ("- **[{{ t }}]({{ u }})** — {{ d }}\n- [Real]({{ u }})", "- Real"),
        ("Setext\n======\nText", "Setext\nText"),
        ("> q1\n> > q2\n>\n> q3\n\n- a\n\n- b", "> q1\n> > q2\n>\n> q3\n\n- a\n\n- b"),
        ("    indented code\n\nText.", "Text."),
        ("Term\n: Def one\n: Def two", "Term\nDef one\nDef two"),
        ("Click <a href='x'>here</a><br/>next <script>var a = '<b>';</script>line", "Click here\nnext line"),
        ("Obj\ufffcect", "Object"),
    ],
)
def test_markdown_construct(markdown, prose):
    assert clean(markdown) == prose


def test_code_keep_keeps_indented_code_and_highlight_content():
    assert clean("    x = 1\n\nText.", code="keep") == "    x = 1\n\nText."
    text = "A.\n\n{% highlight python %}\nif a < b:\n    print('{{ x }}')\n{% endhighlight %}\n\nB."
    assert clean(text, code="keep") == "A.\n\nif a < b:\n    print('{{ x }}')\n\nB."
    assert clean(text) == "A.\n\nB."


def test_html_file_goes_through_the_html_parser():
    page = (
        "---\ntitle: x\n---\n<html><head><title>T</title><style>p{}</style></head><body>"
        "<h1>Head</h1><p>One<br>two &amp; <img src=a.png alt='a cat'> three</p>"
        "<!-- note --><script>if (a < b) {}</script><p>{{ site.x }}</p><p>Last &lt;tag&gt;</p></body></html>"
    )
    assert clean(page, "html") == "T\nHead\n\nOne\ntwo &  three\n\nLast <tag>"
    assert clean(page, "html", images="alt") == "T\nHead\n\nOne\ntwo & a cat three\n\nLast <tag>"
    counts = clean_document(page, "html").counts
    assert counts["HTML comments removed"] == 1 and counts["scripts and styles removed"] == 2
    assert counts["front matter removed"] == 1 and counts["Liquid tags and blocks removed"] == 1


HUGO_POST = """+++
title = 'My First Post'
date = 2024-01-14T07:07:07+01:00
draft = false
tags = ['red']
+++

## Introduction

This is **bold** text, and this is *emphasized* text.

{{< figure src="/images/cat.jpg" title="A cat" >}}

{{< notice note >}}
The inner prose of a paired shortcode stays.
{{< /notice >}}

{{% details title="Click me" %}}
Markdown **inside** a percent shortcode stays too.
{{% /details %}}

Visit the [Hugo](https://gohugo.io) website!
"""


def test_a_hugo_post_keeps_the_prose_of_its_shortcodes_and_loses_its_toml_front_matter():
    assert clean(HUGO_POST) == (
        "Introduction\n\n"
        "This is bold text, and this is emphasized text.\n\n"
        "The inner prose of a paired shortcode stays.\n\n"
        "Markdown inside a percent shortcode stays too.\n\n"
        "Visit the Hugo website!"
    )
    assert clean_document(HUGO_POST).counts["front matter removed"] == 1


markdownish = st.lists(
    st.sampled_from(list("ab \n\t*_`[]()!<>{}:^|-#=~\\&;.\"'\ufffc") + ["{:", "[^1]", ":x:", "{{", "{%", "%}", "}}"])
    | st.sampled_from(["[[", "]]", "![[", "%%", "> [!note]- ", "\\|"]),  # Obsidian's syntax
    max_size=200,
).map("".join)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(text=markdownish, code=st.sampled_from(["drop", "keep"]), images=st.sampled_from(["drop", "alt"]))
def test_any_markdown_becomes_text_without_error(text, code, images):
    for kind in ("markdown", "html"):
        out = clean(text, kind, code=code, images=images, tables="keep")
        assert "\ufffc" not in out and out == out.strip("\n")


# ---------------------------------------------------------------- the report and --explain


def test_report_counts_markup_and_names_the_most_cleaned(tmp_path):
    posts = tmp_path / "posts"
    posts.mkdir()
    (posts / "a.md").write_text("Plain words only.\n")
    (posts / "b.md").write_text("---\ntitle: b\n---\n" + "Text[^1].\n\n[^1]: Note.\n")
    c_text = "Short.\n\n```\n" + "x = 1\n" * 50 + "```\n"
    (posts / "c.md").write_text(c_text)
    (posts / "d.md").write_text("**Bold** [link](https://example.com/a/long/address/that/goes/away).\n")
    report = prepare([posts], tmp_path / "data", log=quiet)
    assert [d["path"] for d in report.most_cleaned] == [str(posts / n) for n in ("c.md", "d.md", "b.md")]
    assert report.most_cleaned[0] == {
        "path": str(posts / "c.md"),
        "characters_before": len(c_text),
        "characters_after": 6,
    }
    meta = json.loads((tmp_path / "data" / "meta.json").read_text())
    assert meta["markup"] == report.markup and meta["most_cleaned"] == report.most_cleaned
    assert meta["markup"]["code blocks dropped"] == 1 and meta["markup"]["footnote markers removed"] == 1
    assert (meta["images"], meta["tables"], meta["code"]) == ("drop", "keep", "drop")
    text = report.format()
    assert "markup removed or converted:\n  code blocks dropped: 1\n" in text
    assert f"  {posts / 'c.md'}: {len(c_text) - 6} of {len(c_text)} characters (98%)" in text


def test_explain_prints_before_after_and_counts(tmp_path, capsys):
    post = tmp_path / "post.md"
    source = "---\ntitle: x\n---\nHello **you**[^1].\n\n[^1]: Hi.\n"
    post.write_text(source)
    assert main(["prepare", "--explain", str(post), "--images", "alt"]) == 0
    out = capsys.readouterr().out
    assert out == (
        f"=== {post}: before cleaning ({len(source)} characters, markdown)\n"
        f"{source}\n"
        f"=== after cleaning (15 characters, {1 - 15 / len(source):.0%} removed)\n"
        "Hello you.\n\nHi.\n"
        "=== markup removed or converted\n"
        "  front matter removed: 1\n"
        "  emphasis markers removed: 1\n"
        "  footnote markers removed: 1\n"
        "  footnote texts moved to the end: 1\n"
    )
    assert not (tmp_path / "data").exists()


def test_explain_refuses_what_it_cannot_show(tmp_path, capsys):
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8")
    (tmp_path / "bin.md").write_bytes(b"\x00\x01")
    with pytest.raises(UserError, match="no such file"):
        explain(tmp_path / "missing.md")
    with pytest.raises(UserError, match="is a folder"):
        explain(tmp_path)
    with pytest.raises(UserError, match="reads .md, .markdown"):
        explain(tmp_path / "photo.jpg")
    with pytest.raises(UserError, match="binary"):
        explain(tmp_path / "bin.md")
    assert main(["prepare", str(tmp_path), "--explain", str(tmp_path / "bin.md")]) == 1
    assert "without SRC paths" in capsys.readouterr().err
