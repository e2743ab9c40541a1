"""Twitter/X archives (bricklm.text.readers.twitter): the owner's tweets, not retweets; t.co links and a reply's
leading @-mentions dropped; a thread of the owner's replies to themself one document."""

import pytest

from bricklm.cli import main
from bricklm.config import PrepareConfig
from bricklm.text.readers import pick
from bricklm.text.readers.base import FileEntry
from bricklm.text.readers.twitter import LINKS, MENTIONS, READER
from exporthelp import tweet, tweets_js, twitter_archive

TWEETS = [
    tweet("100", "A thread about bread 🧵 https://t.co/AbC123"),
    tweet("105", "RT @baker: sourdough tips", retweet=True),
    tweet("110", "@me First, the starter &amp; the flour.", reply_to="100"),
    tweet("120", "@me Then patience.", reply_to="110"),
    tweet("130", "@friend @other Agreed, rye is underrated", reply_to="999", reply_user="friend"),
    tweet("140", "Just a thought"),
]


def read(path):
    return list(READER.read(FileEntry(path), PrepareConfig()))


def test_threads_are_documents_retweets_left_out_links_and_mentions_dropped(tmp_path):
    path = tmp_path / "tweets.js"
    path.write_text(tweets_js(TWEETS), encoding="utf-8")
    assert pick(path.name, path.read_bytes()[:8192]) is READER
    items = read(path)
    skipped = [i for i in items if not hasattr(i, "text")]
    docs = [i for i in items if hasattr(i, "text")]
    assert [(s.path, s.reason) for s in skipped] == [("tweet 105", "a retweet")]
    assert [d.text for d in docs] == [
        "A thread about bread 🧵\n\nFirst, the starter & the flour.\n\nThen patience.",
        "Agreed, rye is underrated",
        "Just a thought",
    ]
    assert docs[0].markup == {LINKS: 1, MENTIONS: 2}


def test_an_older_archives_tweet_js_is_read_too(tmp_path):
    path = tmp_path / "tweet.js"
    path.write_text(tweets_js(TWEETS[:1], part="tweet.part0"), encoding="utf-8")
    assert [d.text for d in read(path)] == ["A thread about bread 🧵"]


def test_prepare_reads_the_archive_zip_in_place(tmp_path, capsys):
    archive = twitter_archive(tmp_path / "twitter-2024-01-01.zip", TWEETS)
    assert main(["prepare", str(archive), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "data/tweets.js (Twitter/X archive): 3 documents read, 1 left out" in out
    assert "files ignored: 4 (extension: .js 3; viewer: 1)" in out  # the archive's own page is no writing
    corpus = (tmp_path / "out" / "corpus.txt").read_text(encoding="utf-8")
    assert "t.co" not in corpus and "@me" not in corpus and "sourdough" not in corpus and "Your archive" not in corpus


@pytest.mark.parametrize("damage", ["truncated", "not a list"])
def test_a_damaged_archive_is_one_error_and_nothing_is_written(tmp_path, capsys, damage):
    path = tmp_path / "tweets.js"
    text = tweets_js(TWEETS)
    path.write_text(text[:-20] if damage == "truncated" else "window.YTD.tweets.part0 = {}", encoding="utf-8")
    before = path.read_bytes()
    assert main(["prepare", str(path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bricklm: error:") and "tweets.js" in err[0]
    assert not (tmp_path / "out").exists() and path.read_bytes() == before
