"""clean_text: Unicode normalisation, invisible/control characters, whitespace."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from expertlm.corpus.clean import clean_text, words


def test_nfc_keeps_compatibility_forms_and_nfkc_folds_them():
    assert clean_text("10 cm²") == "10 cm²"
    assert clean_text("10 cm²", "NFKC") == "10 cm2"
    assert clean_text("ﬁbre", "NFKC") == "fibre"  # the fi ligature
    assert clean_text("ﬁbre") == "ﬁbre"


def test_nfc_composes_decomposed_accents():
    decomposed = "cafe\u0301"
    assert clean_text(decomposed) == "caf\u00e9"


def test_control_characters_are_removed():
    assert clean_text("a\x00b\x07c\x1bd\x7fe\x9ff") == "abcdef"


@pytest.mark.parametrize(
    "invisible",
    ["\u00ad", "\u200b", "\ufeff", "\u2060", "\u200e", "\u202e"],
    ids=["soft-hyphen", "zero-width-space", "bom", "word-joiner", "lrm", "rlo"],
)
def test_invisible_format_characters_are_removed(invisible):
    assert clean_text(f"neu{invisible}ron") == "neuron"


def test_zero_width_joiners_are_kept():
    assert clean_text("a\u200db\u200cc") == "a\u200db\u200cc"


def test_form_feed_and_vertical_tab_become_spaces():
    assert clean_text("page one\x0cpage two") == "page one page two"
    assert clean_text("a\x0bb") == "a b"


def test_line_endings_become_lf():
    assert clean_text("one\r\ntwo\rthree\u0085four") == "one\ntwo\nthree\nfour"


def test_horizontal_whitespace_runs_become_one_space():
    assert clean_text("a  \t b\u00a0\u00a0c\u2009d") == "a b c d"


def test_spaces_around_newlines_are_dropped():
    assert clean_text("end of line   \n   start") == "end of line\nstart"


def test_three_or_more_newlines_become_a_paragraph_break():
    assert clean_text("para one\n\n\n\npara two") == "para one\n\npara two"
    assert clean_text("para one\n \n\t\n para two") == "para one\n\npara two"
    assert clean_text("a\n\nb") == "a\n\nb"  # a paragraph break is kept


def test_strips_the_ends():
    assert clean_text("\ufeff  \n title \n\n ") == "title"
    assert clean_text(" \t\n\x0c ") == ""


def test_removal_before_normalisation_gives_normalised_text():
    # e + soft hyphen + combining acute: once the soft hyphen is gone the result must be NFC.
    assert clean_text("caf e\u00ad\u0301") == "caf \u00e9"


def test_words_casefold_and_drop_punctuation():
    assert words("The CA1 region's (dorsal) cells, Straße!") == [
        "the",
        "ca1",
        "region",
        "s",
        "dorsal",
        "cells",
        "strasse",
    ]


# Text drawn mostly from characters that clean_text treats specially, so that their
# interactions (removal next to combining marks, whitespace around newlines) are exercised.
_SPECIAL = (
    "ae \t\n\r\x0b\x0c\x00\x1f\x7f\x85\u00a0\u00ad\u200b\u200d\u2009\u2028\ufeff"
    "\u0301\u0316\u0327\u00b4\u00b2\ufb01\u1100\u1161\u11a8\u212b\uff21"
)
_texts = st.one_of(st.text(), st.text(alphabet=_SPECIAL))


@settings(max_examples=400, deadline=None)
@given(text=_texts, form=st.sampled_from(["NFC", "NFKC"]))
def test_clean_text_is_idempotent(text, form):
    once = clean_text(text, form)
    assert clean_text(once, form) == once
    assert unicodedata.is_normalized(form, once)
