"""Twitter/X archives (Settings → Your account → Download an archive of your data): the `.zip`, or its
`data/tweets.js`.

    for item in READER.read(FileEntry(Path("data/tweets.js")), PrepareConfig()): ...   # a document per thread

tweets.js is JavaScript that assigns one JSON list: `window.YTD.tweets.part0 = [{"tweet": {...}}]`
(older archives: `tweet.js`, `window.YTD.tweet.part0`; a large archive adds `tweets-part1.js`,
each part read on its own). Every tweet in it is the owner's. Kept: the full_text of each tweet
that is not a retweet, with its t.co links and the @-mentions that lead a reply dropped and HTML
entities (&amp;) decoded. A thread, the owner replying to their own tweet, is one document, its
tweets in order; a reply to someone else is a document of its own. Everything after the first
`=` is read whole as JSON (up to json_max_mb); JSON that does not parse is a UserError. The archive's
"Your archive.html" (its viewer, no writing) is ignored in the zip.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from collections.abc import Iterator

from bricklm.config import PrepareConfig
from bricklm.errors import UserError
from bricklm.text.documents import Document, Skipped, normalise_lines
from bricklm.text.readers.base import Entry, Reader, left_out, read_whole, suffix

_TCO = re.compile(r"\s*https?://t\.co/\w+")
_LEADING_MENTIONS = re.compile(r"^(?:\.?@\w{1,15}\s+)+")
LINKS = "t.co links dropped"
MENTIONS = "leading @-mentions dropped"


def detect(filename: str, head: bytes) -> bool:
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return suffix(filename) == ".js" and re.match(rb"window\.YTD\.tweets?\.part\d+\s*=", start) is not None


def read(entry: Entry, cfg: PrepareConfig) -> Iterator[Document | Skipped]:
    raw = read_whole(entry, cfg.json_max_mb, "json_max_mb")
    if isinstance(raw, Skipped):
        yield raw
        return
    try:
        items = json.loads(raw[raw.index(b"=") + 1 :].decode("utf-8"))
    except (ValueError, RecursionError) as e:
        raise UserError(f"{entry.name}: damaged Twitter archive, not valid JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(items, list):
        raise UserError(f"{entry.name}: not a Twitter archive's tweets (a list of tweets)")
    tweets = {}
    for n, item in enumerate(items, 1):
        tweet = item.get("tweet", item) if isinstance(item, dict) else None
        if not isinstance(tweet, dict) or not isinstance(tweet.get("full_text", tweet.get("text")), str):
            yield left_out(entry, f"item {n}", "not a tweet")
        elif tweet.get("retweeted") is True or tweet.get("full_text", tweet.get("text")).startswith("RT @"):
            yield left_out(entry, f"tweet {tweet.get('id_str', n)}", "a retweet")
        else:
            tweets[str(tweet.get("id_str") or tweet.get("id") or f"#{n}")] = tweet
    yield from _threads(entry, tweets)


def _threads(entry: Entry, tweets: dict[str, dict]) -> Iterator[Document]:
    """A document per thread: a tweet that replies to none of the owner's, then the owner's replies to it."""
    replies: dict[str, list[str]] = {}
    roots = []
    for key, tweet in tweets.items():
        parent = tweet.get("in_reply_to_status_id_str")
        if isinstance(parent, str) and parent in tweets and parent != key:
            replies.setdefault(parent, []).append(key)
        else:
            roots.append(key)
    for root in sorted(roots, key=_order):
        counts: Counter = Counter()
        texts, stack = [], [root]
        while stack:  # depth first, earliest reply first: a thread reads in the order it was written
            key = stack.pop()
            text = _clean(tweets[key], counts)
            if text:
                texts.append(text)
            stack.extend(sorted(replies.get(key, []), key=_order, reverse=True))
        body = "\n\n".join(texts)
        yield Document(f"{entry.name}#{root}", body, None, +counts, len(body), within=entry.name)


def _order(key: str) -> tuple[int, str]:
    return (int(key), key) if key.isdigit() else (0, key)  # ids grow with time


def _clean(tweet: dict, counts: Counter) -> str:
    text = tweet.get("full_text", tweet.get("text"))
    if tweet.get("in_reply_to_status_id_str") or tweet.get("in_reply_to_user_id_str"):
        text, n = _LEADING_MENTIONS.subn("", text)
        counts[MENTIONS] += n
    text, n = _TCO.subn("", text)
    counts[LINKS] += n
    return normalise_lines(html.unescape(text)).strip()


READER = Reader("twitter", "Twitter/X archive", (".js",), detect, read, export=True, viewers=("Your archive.html",))
