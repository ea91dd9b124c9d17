"""Text normalisation shared by what is stored and what is searched (no database, no HTTP)."""

from __future__ import annotations

import re
import unicodedata

#: Longest word kept (fuzzystrmatch's levenshtein() takes at most 255 characters).
MAX_WORD_CHARS = 64
#: Most distinct words kept per image (a page of text; the trigram index still sees all of it).
MAX_WORDS = 512

#: Shortest query word that produces candidates on its own (words with a digit always do: "5").
MIN_QUERY_WORD_CHARS = 3
#: Words so common on signs and pages that matching them says nothing about the image (English,
#: German, French, Spanish, Italian and Dutch articles, pronouns and conjunctions).
_STOP_WORDS_TEXT = """
and are but for from had has have her his its not off our out she the their them then there
these they this those was were what when who why will with you your
das dem den der des die ein eine einen einer und
les une est pour par avec dans sur
los las del con por para che gli una per het een van voor met
"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())

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


def carries_meaning(word: str) -> bool:
    """Whether a query word may produce candidates: not too short, not a stop-word ("a lake"
    must not return every text containing "a")."""
    if any(ch.isdigit() for ch in word):
        return True
    return len(word) >= MIN_QUERY_WORD_CHARS and word not in STOP_WORDS


def query_words(normalised: str) -> list[str]:
    """The words of a normalised query that carry meaning (see ``carries_meaning``)."""
    return [word for word in words(normalised) if carries_meaning(word)]
