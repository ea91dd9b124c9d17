from __future__ import annotations

from services.ocr.text import MAX_WORD_CHARS, normalise, query_words, words


def test_normalise_folds_case_accents_and_punctuation() -> None:
    assert normalise("Café  ROMA!\n— Open_Daily ") == "cafe roma open daily"
    assert normalise("Straße № 5") == "strasse no 5"
    assert normalise("...!!!") == ""


def test_words_are_distinct_in_order_and_clipped() -> None:
    assert words("roma cafe roma") == ["roma", "cafe"]
    assert words("x" * 300) == ["x" * MAX_WORD_CHARS]


def test_query_words_keep_only_words_that_carry_meaning() -> None:
    assert query_words("a lake at the end of 5 th street") == ["lake", "end", "5", "street"]
