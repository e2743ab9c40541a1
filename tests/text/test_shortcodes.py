"""WordPress shortcodes (bricklm.text.shortcodes): captions keep their text, media go, prose in brackets stays."""

from collections import Counter

import pytest

from bricklm.text.shortcodes import expand_shortcodes


def expand(text, code="drop"):
    counts = Counter()
    return expand_shortcodes(text, counts, code), counts


@pytest.mark.parametrize(
    "text, expanded",
    [
        (
            '[caption id="attachment_6" align="alignnone"]<img src="cat.jpg" alt="A cat" /> My cat[/caption]',
            '<img src="cat.jpg" alt="A cat" />\nMy cat',
        ),
        (
            '[caption id="a"]<a href="/x"><img src="cat.jpg"></a> My <b>cat</b>[/caption] after',
            '<a href="/x"><img src="cat.jpg"></a>\nMy <b>cat</b> after',
        ),
        ('[caption id="a" caption="Old style"]<img src="cat.jpg">[/caption]', '<img src="cat.jpg">\nOld style'),
        ('Before [gallery ids="1,2,3"] after', "Before  after"),
        ("[embed]https://www.youtube.com/watch?v=x[/embed]Text", "Text"),
        ('[audio mp3="/a.mp3"][/audio]', ""),
        ('[video width="640" src="/v.mp4" /]', ""),
        ('[playlist ids="1,2"]', ""),
        ('[su_box title="Note"]Inner prose[/su_box]', "Inner prose"),
        ("[custom_thing /] stays out", " stays out"),
        ("I wrote [sic] and [1] and [citation needed].", "I wrote [sic] and [1] and [citation needed]."),
        ("[[gallery]] is how to write it", "[gallery] is how to write it"),
        ("A [/closing] that closes nothing", "A [/closing] that closes nothing"),
        ("No brackets at all", "No brackets at all"),
    ],
)
def test_shortcode(text, expanded):
    assert expand(text)[0] == expanded


def test_code_shortcodes_are_code_blocks():
    text = 'Before [code lang="python"]\nif a < b:\n    pass\n[/code] after'
    assert expand(text) == ("Before  after", Counter({"shortcodes removed": 1, "code blocks dropped": 1}))
    kept, counts = expand(text, code="keep")
    assert kept == "Before <pre>if a &lt; b:\n    pass</pre> after" and counts["code blocks kept"] == 1


def test_shortcodes_are_counted():
    _, counts = expand('[caption id="a"]<img> x[/caption] [gallery] [su_note]y[/su_note] [sic]')
    assert counts == Counter({"shortcodes removed": 5})  # caption, its close, gallery, su_note and its close


def test_unclosed_openers_expand_in_linear_time():
    # Each case would rescan the rest of the text from every "[" if the scan were not bounded (a hang, not a timing).
    for unit in ("[", "[a", "[a ", "[a]", "[a b=c", "[/a]", "[[a"):
        assert expand(unit * 20000)[0] == unit * 20000
    assert expand("[caption]" * 20000)[0] == ""  # a known shortcode, never closed: each tag goes
    assert expand("[a]" * 20000 + "[/a]")[0] == ""  # closed once at the very end: every tag goes
