"""The command line: user errors are one `error:` line and exit status 2, never a traceback;
the verbs call their stage functions."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from expertlm import __version__
from expertlm.cli import app

DOCS = [
    f"Document {i}: the neuron fires and the synapse {'strengthens' if i % 2 else 'weakens'} "
    f"after {i} trials of stimulation in cortex and hippocampus."
    for i in range(60)
]


def run_cli(*args: str | Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "EXPERTLM_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "expertlm", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit 2, one `error:` line on stderr naming what is at fault, no traceback."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def write_sources(folder: Path, docs=DOCS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "docs.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": f"d{i}", "text": t, "year": 2010}) + "\n" for i, t in enumerate(docs)
        )
    )
    return path


@pytest.fixture
def corpus(tmp_path) -> Path:
    """A corpus folder written directly (no CLI)."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    for split, texts in (("train", DOCS[:50]), ("val", DOCS[50:])):
        lines = "".join(
            json.dumps({"id": f"{split}{i}", "text": t, "year": 2010, "source": "t"}) + "\n"
            for i, t in enumerate(texts)
        )
        (folder / f"{split}.jsonl.gz").write_bytes(gzip.compress(lines.encode(), mtime=0))
    return folder


# --- errors, through a real process ----------------------------------------------------------


def test_missing_source_path(tmp_path):
    missing = tmp_path / "no-such-dir" / "docs.jsonl"
    proc = run_cli("corpus", "build", missing, "--out", tmp_path / "c")
    assert_user_error(proc, str(missing), "no such file or folder")
    assert not (tmp_path / "c").exists()


def test_bad_jsonl_line_names_file_and_line(tmp_path):
    src = write_sources(tmp_path / "src", DOCS[:3])
    with open(src, "a") as f:
        f.write('{"id": "broken", "text": \n')
    proc = run_cli("corpus", "build", src, "--out", tmp_path / "c", "--min-chars", "0")
    assert_user_error(proc, f"{src}:4:")
    assert not (tmp_path / "c").exists()


def test_vocab_size_below_bytes_names_the_option(corpus, tmp_path):
    proc = run_cli("tokenizer", "train", corpus, "--out", tmp_path / "tok", "--vocab-size", "100")
    assert_user_error(proc, "vocab", "257")
    assert not (tmp_path / "tok").exists()


def test_option_of_the_wrong_type_is_a_usage_error(tmp_path):
    src = write_sources(tmp_path / "src")
    proc = run_cli("corpus", "build", src, "--out", tmp_path / "c", "--min-chars", "abc")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "Invalid value" in proc.stderr
    assert "--min-chars" in proc.stderr
    assert not (tmp_path / "c").exists()


def test_existing_output_without_overwrite(corpus, tmp_path):
    out = tmp_path / "tok"
    out.mkdir()
    (out / "keep").write_text("x")
    proc = run_cli("tokenizer", "train", corpus, "--out", out, "--vocab-size", "300")
    assert_user_error(proc, str(out), "already exists", "--overwrite")
    assert (out / "keep").read_text() == "x"


def test_error_message_is_printed_verbatim_not_as_markup(tmp_path):
    # rich would read "[/x]" as a closing tag (MarkupError traceback) and drop "[old]"
    missing = tmp_path / "data[old]" / "[/x]" / "docs.jsonl"
    proc = run_cli("corpus", "build", missing, "--out", tmp_path / "c")
    assert_user_error(proc, str(missing))


def test_version():
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"expertlm {__version__}"


def test_help_lists_the_verbs():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for verb in ("corpus", "tokenizer", "data"):
        assert verb in proc.stdout


# --- success, in process ---------------------------------------------------------------------

runner = CliRunner()


def invoke(*args: str | Path):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_verbs_run_the_stages(tmp_path):
    src = write_sources(tmp_path / "src")
    corpus, tok_a, tok_b, shards = (tmp_path / n for n in ("corpus", "ta", "tb", "shards"))
    invoke(
        "corpus", "build", src, "--out", corpus, "--min-chars", "0", "--no-near-dedup",
        "--val-frac", "0.2", "--no-progress",
    )  # fmt: skip
    manifest = json.loads((corpus / "manifest.json").read_text())
    assert manifest["counts"]["input"] == manifest["counts"]["kept"] == len(DOCS)
    assert manifest["config"]["val_frac"] == 0.2

    invoke("tokenizer", "train", corpus, "--out", tok_a, "--vocab-size", "300", "--no-progress")
    invoke("tokenizer", "train", corpus, "-o", tok_b, "--vocab-size", "320", "--max-docs", "20")
    info_b = json.loads((tok_b / "expertlm_tokenizer.json").read_text())
    assert info_b["vocab_size_requested"] == 320
    assert info_b["trained_on"]["docs"] == 20
    assert info_b["config"]["min_frequency"] == 2

    result = invoke("tokenizer", "compare", tok_a, tok_b, "--on", corpus, "--json")
    printed = json.loads(result.stdout)
    assert [r["tokenizer"] for r in printed["tokenizers"]] == [str(tok_a), str(tok_b)]
    result = invoke(
        "tokenizer", "compare", tok_a, tok_b, "--on", corpus, "--split", "train", "-o",
        tmp_path / "cmp.json",
    )  # fmt: skip
    assert "tokens/word" in result.stdout
    assert json.loads((tmp_path / "cmp.json").read_text())["split"] == "train"

    invoke("data", "prepare", corpus, "--tokenizer", tok_a, "--out", shards, "--no-progress")
    meta = json.loads((shards / "meta.json").read_text())
    assert meta["docs"] == {s: manifest["split"][s]["docs"] for s in ("train", "val")}
    train = np.memmap(shards / "train.bin", dtype=meta["dtype"], mode="r")
    assert len(train) == meta["tokens"]["train"]
    result = invoke("data", "prepare", corpus, "-t", tok_a, "-o", shards)
    assert "up to date" in result.stderr


# --- the command line is generated from the registry and the config models --------------------


def _commands():
    from expertlm.experiment.stages import STAGE_KINDS

    for kind in STAGE_KINDS:
        if kind.command is not None:
            group = app
            for part in kind.command.split():
                group = group.commands[part]
            yield kind, group


@pytest.mark.parametrize("kind,cmd", list(_commands()), ids=lambda x: getattr(x, "name", ""))
def test_every_config_field_is_a_flag_with_the_models_default_and_help(kind, cmd):
    from expertlm import cli, config

    params = {p.name: p for p in cmd.params}
    for name, field in kind.config.model_fields.items():
        assert field.description, f"{kind.config.__name__}.{name} has no docstring (its help)"
        param = params[name]
        if name in kind.positional:
            assert param.param_type_name == "argument"
            continue
        assert config.flag(name) in param.opts, (name, param.opts)
        assert param.help == field.description
        # the flag's default, read back as the model reads it, is the model's default
        default = field.get_default(call_default_factory=True)
        value = cli.option_value(field, param.default)
        if isinstance(param.type, cli.Numbers) and value is not None:
            value = param.type.convert(value, param, None)
        if isinstance(param.type, cli.KeyValue):
            value = dict(param.type.convert(v, param, None) for v in param.default)
        if name == "years":
            value = kind.config.model_validate({name: value}).years
        if hasattr(default, "model_dump"):  # a model of options (--model): its given fields
            default = default.model_dump()
        assert value == default, (name, value, default)


def test_bf16_alone_means_yes_and_takes_no_or_auto():
    from expertlm import cli
    from expertlm.config import TrainConfig

    field, cmd = TrainConfig.model_fields["bf16"], app.commands["train"]
    for given, expected in (([], False), (["--bf16"], True), (["--bf16", "yes"], True),
                            (["--bf16", "no"], False), (["--bf16", "auto"], "auto")):  # fmt: skip
        ctx = cmd.make_context("train", ["shards", "--out", "o", *given])
        assert TrainConfig(bf16=cli.option_value(field, ctx.params["bf16"])).bf16 == expected, given
    result = runner.invoke(app, ["train", "shards", "--out", "o", "--bf16", "maybe"])
    assert result.exit_code == 2 and "'maybe' is not one of 'yes', 'no', 'auto'" in result.output


def test_every_command_lists_every_option_in_its_help():
    from expertlm.config import flag

    for kind, _ in _commands():
        result = runner.invoke(app, [*kind.command.split(), "--help"], terminal_width=200)
        assert result.exit_code == 0, result.output
        for name in kind.config.model_fields:
            shown = name.upper() if name in kind.positional else flag(name)
            assert shown in result.output, (kind.command, name)
    top = runner.invoke(app, ["--help"]).output
    assert all(kind.command.split()[0] in top for kind, _ in _commands())


def test_no_help_text_or_default_is_written_twice():
    """cli.py holds no copy of a help text or default: they live in config.py (field docstrings)
    and the registry (inputs, outputs, commands)."""
    import ast

    from expertlm.experiment.stages import STAGE_KINDS

    source = (Path(__file__).parents[1] / "src" / "expertlm" / "cli.py").read_text()
    strings = {n.value for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant)
               and isinstance(n.value, str) and len(n.value) > 15}  # fmt: skip
    texts = {k.help for k in STAGE_KINDS}
    for kind in STAGE_KINDS:
        texts |= {i.help for i in kind.inputs} | ({kind.output.help} if kind.output else set())
        texts |= {f.description for f in kind.config.model_fields.values() if f.description}
    for s in strings:
        assert not any(s in t or t in s for t in texts if len(t) > 15), s


def test_lazy_exports_come_from_the_registry():
    import expertlm
    from expertlm.experiment.stages import REGISTRY

    for name in expertlm.__all__:
        if name in REGISTRY:
            assert getattr(expertlm, name) is REGISTRY[name].load()
    assert {n for n, k in REGISTRY.items() if k.command} <= set(expertlm.__all__)
