"""Stage configs: every problem reported at once, each naming its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from expertlm.config import MIN_VOCAB_SIZE, CorpusConfig, TokenizerConfig
from expertlm.errors import ExpertlmError


def names(line: str, key: str) -> bool:
    """Whether an error line names `key` (as the key or as its --flag)."""
    return key in line or key.replace("_", "-") in line


def error_lines(cls, options, **kw) -> list[str]:
    with pytest.raises(ExpertlmError) as e:
        cls.from_options(options, **kw)
    return str(e.value).splitlines()


def test_defaults_and_valid_options():
    cfg = CorpusConfig.from_options(
        {"min_chars": 50, "max_year": 2022, "decontam": ["bb.csv"], "unicode_form": "NFKC"}
    )
    assert cfg.min_chars == 50 and cfg.max_year == 2022 and cfg.unicode_form == "NFKC"
    assert cfg.decontam == [Path("bb.csv")]
    assert CorpusConfig.from_options(None) == CorpusConfig()
    assert CorpusConfig().text_field == "text" and CorpusConfig().val_frac == 0.01


def test_unknown_key_and_bad_type_are_both_reported():
    lines = error_lines(CorpusConfig, {"bogus_key": 1, "min_chars": "lots"})
    assert len(lines) == 2
    unknown = [line for line in lines if names(line, "bogus_key")]
    bad_type = [line for line in lines if names(line, "min_chars")]
    assert len(unknown) == 1 and "unknown key" in unknown[0]
    assert len(bad_type) == 1 and "integer" in bad_type[0]


def test_config_file_source_names_keys():
    lines = error_lines(
        CorpusConfig, {"val_frac": 1.5, "near_threshold": 0, "typo": True}, source="exp.yaml"
    )
    assert len(lines) == 3
    assert all(line.startswith("exp.yaml") for line in lines)
    for key in ("val_frac", "near_threshold", "typo"):
        assert sum(f"'{key}'" in line for line in lines) == 1


def test_literal_choices_are_checked():
    (line,) = error_lines(CorpusConfig, {"unicode_form": "NFD"})
    assert names(line, "unicode_form") and "NFC" in line and "NFKC" in line


def test_min_year_after_max_year_is_rejected():
    (line,) = error_lines(CorpusConfig, {"min_year": 2020, "max_year": 2010})
    assert "min_year 2020" in line and "max_year 2010" in line
    assert "top level" not in line
    assert CorpusConfig.from_options({"min_year": 2010, "max_year": 2010}).min_year == 2010


def test_configs_are_frozen():
    cfg = CorpusConfig()
    with pytest.raises(Exception):  # noqa: B017 (pydantic's ValidationError)
        cfg.min_chars = 5


@pytest.mark.parametrize("vocab_size", [0, 255, 256])
def test_tokenizer_vocab_below_the_byte_alphabet_is_rejected(vocab_size):
    (line,) = error_lines(TokenizerConfig, {"vocab_size": vocab_size})
    assert names(line, "vocab_size") and "257" in line


def test_tokenizer_vocab_limits():
    assert MIN_VOCAB_SIZE == 257
    assert TokenizerConfig.from_options({"vocab_size": 257}).vocab_size == 257
    assert TokenizerConfig().vocab_size == 50_257
    (line,) = error_lines(TokenizerConfig, {"vocab_size": 2**32 + 1})
    assert names(line, "vocab_size") and "uint32" in line


def test_tokenizer_reports_every_problem():
    lines = error_lines(TokenizerConfig, {"vocab_size": 10, "min_frequency": 0, "max_docs": "x"})
    assert len(lines) == 3
    for key in ("vocab_size", "min_frequency", "max_docs"):
        assert sum(names(line, key) for line in lines) == 1


def test_bf16_takes_a_bool_or_auto_and_a_bad_value_is_one_line_naming_the_key():
    from pydantic import ValidationError

    from expertlm.config import TrainConfig, format_validation_error

    for given, expected in ((True, True), ("no", False), ("auto", "auto"), (0, False)):
        assert TrainConfig(bf16=given).bf16 == expected
    with pytest.raises(ValidationError) as err:
        TrainConfig(bf16="maybe")
    assert format_validation_error(err.value, "demo.yaml") == (
        "demo.yaml: key 'bf16': expected true, false or auto, not 'maybe'"
    )
