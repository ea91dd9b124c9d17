"""Text normalisation shared by what is stored and what is searched (no database, no HTTP)."""

from __future__ import annotations

import re
import unicodedata

#: Longest word kept (fuzzystrmatch's levenshtein() takes at most 255 characters).
MAX_WORD_CHARS = 64
#: Most distinct words kept per image (a page of text; the trigram index still sees all of it).
MAX_WORDS = 512

_NON_WORD = re.compile(r"[^\w]+|_+")


def normalise(text: str) -> str:
    """Lower case, accents removed, anything but letters and digits turned into single spaces:
    "Café ROMA!" -> "cafe roma". Stored and query text go through the same function."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(_NON_WORD.sub(" ", stripped.casefold()).split())


def words(normalised: str) -> list[str]:
    """Distinct words of normalised text, in first-seen order, clipped to the stored limits."""
    seen: dict[str, None] = {}
    for word in normalised.split():
        seen.setdefault(word[:MAX_WORD_CHARS], None)
        if len(seen) >= MAX_WORDS:
            break
    return list(seen)
