"""The privacy guard's check: no span of more than `most` characters of the training text, kept as text grows.

    guard = CopyGuard(index, most=60, before=prompt)    # the prompt counts: a span may start in it
    if guard.add(" and my cat"):                         # True: added, no span longer than 60 ends in it
        ...                                              # False: refused, and the guard is as it was

Incremental: the guard keeps only the longest suffix of the text so far that the training text holds
(the current match, at most `most` characters). Adding a character c, the longest held suffix of
text + c is a suffix of that match + c, so it is found by trying match + c and dropping characters
from its front until the training text holds it (CopyIndex.holds: one suffix-array search each). Each
character is dropped at most once after it was added, so a text costs about two searches a character,
whatever its length, and a refused addition leaves the guard as it was. A span of more than `most`
characters anywhere in the text would end in a suffix of `most` + 1 held characters at its last
character, which is what add refuses; spans wholly inside `before` are the client's own and not counted.

What this is: a guard against verbatim recitation. Text that says the same thing in other words, or
the same characters with one changed every `most` characters, passes it.
"""

from __future__ import annotations

from bricklm.text.copyindex import CopyIndex


class CopyGuard:
    """The longest span of training text ending at the end of a growing text, refusing any past `most`."""

    def __init__(self, index: CopyIndex, most: int, before: str = ""):
        if most < 1:
            raise ValueError("the guard needs most >= 1")
        self.index, self.most = index, most
        self.match = ""  # the longest suffix of the text so far that the training text holds
        self.match = self._extend(before[-most:]) or ""  # `most` characters of it are all a span can use

    def _extend(self, chars: str) -> str | None:
        """The match after adding chars, or None if a span of more than `most` characters would end in them."""
        match = self.match
        for c in chars:
            match += c
            while match and not self.index.holds(match):
                match = match[1:]
            if len(match) > self.most:
                return None
        return match

    def add(self, chars: str) -> bool:
        """Add chars if they keep every span at `most` characters or fewer (True); otherwise change nothing."""
        match = self._extend(chars)
        if match is None:
            return False
        self.match = match
        return True
