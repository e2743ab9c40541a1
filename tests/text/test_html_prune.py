"""Cutting a platform's chrome out of HTML (bricklm.text.html_prune): whole subtrees dropped, the rest written back."""

from bricklm.text.html_prune import has_class, prune


def test_dropped_elements_go_with_everything_inside_them():
    page = prune(
        '<p>Keep &amp; <b>this</b>.</p><div class="box wide"><p>Subscribe <i>now</i></p><br></div><p>And this.</p>',
        drop=lambda tag, attrs: has_class(attrs, "box"),
    )
    assert page.html == "<p>Keep &amp; <b>this</b>.</p><p>And this.</p>" and page.dropped == 1


def test_only_what_keep_matches_is_kept():
    source = (
        "<html><head><title>T</title><style>p { color: red }</style></head><body><header>By me</header>"
        '<section data-field="body"><p>Body <img src="x.png"> text.</p></section>'
        "<footer>Exported</footer></body></html>"
    )
    page = prune(source, keep=lambda tag, attrs: attrs.get("data-field") == "body")
    assert page.html == '<p>Body <img src="x.png"> text.</p>'


def test_unclosed_and_stray_tags_do_not_lose_the_text_after_them():
    page = prune("<div class='ad'><p>Ad</div></span><p>After.", drop=lambda tag, attrs: has_class(attrs, "ad"))
    assert page.html == "<p>After."
