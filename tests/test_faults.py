"""Bad input and faults, as a careless or hostile user makes them (issue 13): one test per class.

Each class: nothing the user had is lost (not even with --overwrite, a failed run or a kill),
no silent wrong result, every user error one `error:` line with exit status 2 (no traceback),
and `run --dry-run` (tests/test_plan.py) finds what the stages would reject later."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import pytest

from expertlm.errors import ExpertlmError

from lm_fixtures import TEXTS, make_tokenizer, random_gpt2

ENV = {**os.environ, "EXPERTLM_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    for k in ("EXPERTLM_NO_PROGRESS", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(k, "1")


@contextlib.contextmanager
def _cwd(folder):
    before = os.getcwd()
    os.chdir(folder or before)
    try:
        yield
    finally:
        os.chdir(before)


def cli(*args, cwd=None) -> subprocess.CompletedProcess:
    """`expertlm ARGS` run in this process (what a user sees: exit status, stdout, stderr); an
    exception that escapes the command line is a traceback and fails the test."""
    from expertlm.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _cwd(cwd):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def cli_process(*args, timeout=300) -> subprocess.CompletedProcess:
    """`expertlm ARGS` in a process of its own."""
    return subprocess.run([sys.executable, "-m", "expertlm", *map(str, args)], capture_output=True,
                          text=True, env=ENV, timeout=timeout)  # fmt: skip


def one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit 2, no traceback, exactly one `error:` line holding every fragment; the line."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for f in fragments:
        assert f in errors[0], (f, errors[0])
    return errors[0]


def digest(path: Path) -> str:
    """Every file of a folder (names and bytes), or one file."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def same_data(path: Path, reference: Path) -> bool:
    """The same files with the same bytes, but for JSON records (manifests, summaries: their
    timings and provenance differ from run to run), which need only be complete JSON."""
    names = sorted(p.relative_to(reference) for p in reference.rglob("*") if p.is_file())
    if sorted(p.relative_to(path) for p in path.rglob("*") if p.is_file()) != names:
        return False
    for name in names:
        if name.suffix == ".json":
            json.loads((path / name).read_text())
        elif (path / name).read_bytes() != (reference / name).read_bytes():
            return False
    return True


DOCS = [f"{t} Trial {i} of the study {'strengthened' if i % 2 else 'weakened'} the synapse."
        for i, t in enumerate(TEXTS * 40)]  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A source file, corpus, tokenizer, shards, a trained run, a model, a benchmark."""
    import expertlm

    root = tmp_path_factory.mktemp("faults")
    src = root / "src"
    src.mkdir()
    (src / "docs.jsonl").write_text("".join(
        json.dumps({"id": f"d{i}", "text": t, "year": 2000 + i % 20, "journal": "J"}) + "\n"
        for i, t in enumerate(DOCS)))  # fmt: skip
    corpus = expertlm.corpus_build([src], root / "corpus", min_chars=10, val_frac=0.2,
                                   show_progress=False)
    tok = expertlm.tokenizer_train(corpus, root / "tok", vocab_size=300, show_progress=False)
    shards = expertlm.data_prepare(corpus, root / "shards", tokenizer=tok, show_progress=False)
    run = expertlm.train(shards, root / "run", preset="gpt2-tiny", max_steps=4, context=32,
                         micro_batch=2, ckpt_every_steps=2, show_progress=False)  # fmt: skip
    bench = root / "bench.csv"
    bench.write_text("doi,journal_section,original_abstract,incorrect_abstract\n" + "".join(
        f'd{i},S,"The receptor {i} increased firing.","The receptor {i} decreased firing."\n'
        for i in range(6)))  # fmt: skip
    return {"root": root, "src": src, "corpus": corpus, "tok": tok, "shards": shards,
            "run": run, "bench": bench}  # fmt: skip


def copy(path: Path, to: Path) -> Path:
    (shutil.copytree if path.is_dir() else shutil.copy)(path, to)
    return to


# --- 1. an output that is, holds or lies inside an input, or a protected folder ----------------


def test_overwrite_never_deletes_an_input(world, tmp_path):
    w = world
    corpus, shards = copy(w["corpus"], tmp_path / "c"), copy(w["shards"], tmp_path / "data" / "sh")
    before = {p: digest(p) for p in (corpus, shards, w["run"], w["src"])}
    cases = [
        (("data", "prepare", corpus, "--tokenizer", w["tok"], "--out", corpus), "is the input"),
        (("tokenizer", "train", corpus, "--out", corpus), "is the input"),
        (("corpus", "build", w["src"], "--out", w["src"]), "is the input"),
        (("corpus", "build", w["src"] / "docs.jsonl", "--out", w["src"]), "holds the input"),
        (("train", shards, "--out", tmp_path / "data", "--preset", "gpt2-tiny"), "holds the input"),
        (("train", shards, "--out", shards / "run"), "lies inside the input"),
        (("merge", w["run"], w["run"], "--out", w["run"]), "is the input"),
        (("eval", "bench", w["bench"], "-m", w["run"], "--out", w["run"] / "res"), "lies inside"),
    ]
    for args, fragment in cases:
        one_line_error(cli(*args, "--overwrite"), fragment)
    assert before == {p: digest(p) for p in before}


@pytest.mark.parametrize("out", [".", "..", "~", "/"])
def test_protected_folders_are_never_outputs(world, tmp_path, out):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    (work / "keep").write_text("x")
    out = os.path.expanduser(out)
    proc = cli("tokenizer", "train", world["corpus"], "--out", out, "--overwrite", cwd=work)
    one_line_error(proc, "name a new folder")
    assert (work / "keep").read_text() == "x"


# --- 2. a failing new run leaves the old one as it was ----------------------------------------


def test_a_failing_overwrite_keeps_the_old_run(world, tmp_path):
    run = copy(world["run"], tmp_path / "run")
    before = digest(run)
    proc = cli("train", world["shards"], "--out", run, "--overwrite", "--preset", "gpt2-tiny",
               "--context", "32", "--micro-batch", "2", "--max-steps", "6", "--lr", "1e9")  # fmt: skip
    one_line_error(proc, "loss became nan")
    assert digest(run) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers
    proc = cli("train", world["shards"], "--out", run, "--overwrite", "--preset", "gpt2-tiny",
               "--model", "n_layer=-2")  # fmt: skip
    one_line_error(proc, "--model n_layer")
    assert digest(run) == before


# --- 3. other inputs need --overwrite; a resume keeps its run's data and options ---------------


def test_data_prepare_replaces_shards_of_other_inputs_only_with_overwrite(world, tmp_path):
    import expertlm

    shards = copy(world["shards"], tmp_path / "sh")
    tok2 = expertlm.tokenizer_train(world["corpus"], tmp_path / "tok2", vocab_size=280,
                                    show_progress=False)  # fmt: skip
    before = digest(shards)
    with pytest.raises(ExpertlmError, match="another corpus or tokenizer.*--overwrite"):
        expertlm.data_prepare(world["corpus"], shards, tokenizer=tok2, show_progress=False)
    assert digest(shards) == before


def test_resume_refuses_other_shards_and_changed_options(world, tmp_path):
    import expertlm

    run = copy(world["run"], tmp_path / "run")
    other = copy(world["shards"], tmp_path / "other")
    meta = json.loads((other / "meta.json").read_text())
    (other / "meta.json").write_text(json.dumps(meta | {"corpus_hash": "0" * 64}))
    with pytest.raises(ExpertlmError, match="training data differ.*corpus_hash"):
        expertlm.train(other, run, resume=True, max_steps=6, show_progress=False)
    with pytest.raises(ExpertlmError, match=r"--lr 0.5 differs from the run's None"):
        expertlm.train(world["shards"], run, resume=True, lr=0.5, max_steps=6, show_progress=False)
    # budget and logging options may change
    expertlm.train(world["shards"], run, resume=True, max_steps=6, show_progress=False)
    assert json.loads((run / "run.json").read_text())["steps"] == 6


# --- 4-6. silent wrong results --------------------------------------------------------------


def test_keep_field_cannot_overwrite_what_the_build_sets(world, tmp_path):
    for field in ("text", "year", "id", "source"):
        one_line_error(cli("corpus", "build", world["src"], "--out", tmp_path / field,
                           "--keep-field", field), "--keep-field", field)  # fmt: skip


@pytest.mark.parametrize("flag", ["--year-field", "--id-field", "--keep-field"])
def test_a_field_no_record_has_is_an_error_naming_the_fields_seen(world, tmp_path, flag):
    proc = cli("corpus", "build", world["src"], "--out", tmp_path / "c", flag, "yaer",
               "--max-year", "2005", "--min-chars", "10")  # fmt: skip
    one_line_error(proc, "'yaer'", flag, "fields seen: id, text, year, journal")
    assert not (tmp_path / "c").exists()


def test_years_outside_any_publication_year_are_bad_records(tmp_path):
    src = tmp_path / "y.jsonl"
    src.write_text("".join(json.dumps({"id": str(y), "text": "long enough text " * 20, "year": y})
                           + "\n" for y in (2001, 99999, -5)))  # fmt: skip
    one_line_error(cli("corpus", "build", src, "--out", tmp_path / "c"), "y.jsonl:2", "99999")
    cli("corpus", "build", src, "--out", tmp_path / "c", "--skip-bad")
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert manifest["counts"]["kept"] == 1 and manifest["counts"]["removed"]["bad_record"] == 2


def test_short_token_files_repeated_items_and_layerless_models_are_refused(world, tmp_path):
    from expertlm.eval.benchmark import read_benchmark
    from expertlm.shards import open_tokens

    shards = copy(world["shards"], tmp_path / "sh")
    data = (shards / "train.bin").read_bytes()
    (shards / "train.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ExpertlmError, match="meta.json says"):
        open_tokens(shards)
    bench = tmp_path / "b.csv"
    lines = world["bench"].read_text().splitlines()
    bench.write_text("\n".join([*lines, lines[1]]) + "\n")
    with pytest.raises(ExpertlmError, match=r"b.csv:8: row 7 \(d0\): the same id as row 1"):
        read_benchmark(bench)
    one_line_error(cli("train", world["shards"], "--out", tmp_path / "r", "--model", "n_layer=0"),
                   "--model n_layer")  # fmt: skip


# --- 7. tracebacks on user errors: one `error:` line each -------------------------------------


def test_user_errors_are_one_line(world, tmp_path):
    w = world
    bad_meta = {}
    for name, edit in (("no-vocab", lambda m: m.pop("vocab_size")),
                       ("small-vocab", lambda m: m.update(vocab_size=10)),
                       ("dtype", lambda m: m.update(dtype="int8"))):  # fmt: skip
        sh = copy(w["shards"], tmp_path / f"sh-{name}")
        meta = json.loads((sh / "meta.json").read_text())
        edit(meta)
        (sh / "meta.json").write_text(json.dumps(meta))
        bad_meta[name] = sh
    odd = copy(w["shards"], tmp_path / "sh-odd")
    (odd / "train.bin").write_bytes((odd / "train.bin").read_bytes()[:-1])
    trunc, empty, pickled = (copy(w["run"], tmp_path / n) for n in ("trunc", "empty", "pickled"))
    (trunc / "model.safetensors").write_bytes((trunc / "model.safetensors").read_bytes()[:500])
    (empty / "model.safetensors").write_bytes(b"")
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    out = tmp_path / "out"
    cases = [
        (("train", w["shards"], "--out", out, "--device", "cuda"), "--device"),
        (("train", w["shards"], "--out", out, "--device", "tpu9"), "unknown device 'tpu9'"),
        (("train", w["shards"], "--out", out, "--model", "n_layer=abc"), "--model n_layer"),
        (("train", w["shards"], "--out", out, "--model", "n_embd=64000"), "not divisible"),
        (("train", w["shards"], "--out", out, "--preset", "gpt2-tiny", "--model", "n_embd=64000"),
         "GiB to train"),
        (("train", odd, "--out", out), "not a whole number"),
        (("train", bad_meta["no-vocab"], "--out", out), "vocab_size"),
        (("train", bad_meta["small-vocab"], "--out", out), "not below meta.json's vocab_size 10"),
        (("train", bad_meta["dtype"], "--out", out), "'int8' is not uint16 or uint32"),
        (("eval", "bench", w["bench"], "-m", trunc, "--out", out), "not a loadable model"),
        (("eval", "bench", w["bench"], "-m", empty, "--out", out), "not a loadable model"),
        (("merge", w["run"], trunc, "--out", out), "not a readable safetensors file"),
        (("eval", "bench", w["bench"], "-m", pickled, "--out", out), "never unpickles"),
        (("merge", w["run"], pickled, "--out", out), "never unpickles"),
        (("train", w["shards"], "--out", out, "--max-time", "-5"), "--max-time:"),
        (("corpus", "build", w["src"], "--out", out, "--min-chars", "abc"), "--min-chars"),
        (("corpus", "build", w["src"], "--out", out, "--no-such-option"), "--no-such-option"),
    ]  # fmt: skip
    for args, fragment in cases:
        one_line_error(cli(*args), fragment)
        assert not out.exists(), args
    # tokenizer train takes a corpus file as data prepare does
    proc = cli("tokenizer", "train", w["corpus"] / "train.jsonl.gz", "--out", out, "--vocab-size", "280")
    assert proc.returncode == 0, proc.stderr


def test_resume_passes_over_a_damaged_checkpoint_and_a_torn_metrics_line(world, tmp_path):
    run = copy(world["run"], tmp_path / "run")
    newest = sorted((run / "checkpoints").glob("step-*"))[-1]
    opt = newest / "trainer_state" / "optimizer.pt"
    opt.write_bytes(opt.read_bytes()[:100])
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 9, "tok')
    proc = cli("train", world["shards"], "--out", run, "--resume", "--max-steps", "6")
    assert proc.returncode == 0, proc.stderr
    assert f"{newest}: damaged" in proc.stderr and "resuming" in proc.stderr
    steps = [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 6


# --- 9-12. memory, the offline hub, CSV lines, a model without its tokenizer ------------------


def test_one_huge_document_is_deduplicated_in_bounded_memory():
    from expertlm.corpus.dedup import NearDedup

    text = " ".join(f"w{i % 5000}x{i % 7}" for i in range(400_000))  # 400k words, ~3 MB
    tracemalloc.start()
    NearDedup().is_duplicate(text)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # (the whole document at once: 400k shingles x 128 permutations x 8 bytes = 400 MB)
    assert peak < 150e6, peak


def test_a_name_that_is_no_folder_fails_at_once_offline(world, tmp_path):
    t0 = time.time()
    proc = cli("data", "prepare", world["corpus"], "--tokenizer", "nope", "--out", tmp_path / "s")
    one_line_error(proc, "nope", "cannot be reached", "local tokenizer folder")
    assert time.time() - t0 < 30


def test_bad_utf8_in_a_benchmark_csv_is_reported_at_its_line(world, tmp_path):
    lines = world["bench"].read_bytes().splitlines(keepends=True)
    lines[5] = lines[5].replace(b"firing", b"fir\xffing", 1)
    bench = tmp_path / "b.csv"
    bench.write_bytes(b"".join(lines))
    one_line_error(cli("eval", "bench", bench, "-m", world["run"], "--out", tmp_path / "r"),
                   f"{bench}:6: not valid UTF-8")  # fmt: skip


def test_a_model_folder_without_tokenizer_files_says_so(world, tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    for f in ("config.json", "model.safetensors"):
        shutil.copy(world["run"] / f, model / f)
    one_line_error(cli("eval", "bench", world["bench"], "-m", model, "--out", tmp_path / "r"),
                   "no tokenizer files")  # fmt: skip


# --- 13. wording ------------------------------------------------------------------------------


def test_messages_say_what_is_wrong(world, tmp_path):
    src = tmp_path / "n.jsonl"
    src.write_text('{"id": "a", "text": null}\n{"id": "b", "text": "a\\u0001b\x01"}\n')
    one_line_error(cli("corpus", "build", src, "--out", tmp_path / "c"), "n.jsonl:1", "is null")
    src.write_text('{"id": "a", "text": "a\x01b"}\n')
    line = one_line_error(cli("corpus", "build", src, "--out", tmp_path / "c"), "n.jsonl:1")
    assert "at at" not in line


# --- 14-16. stale temporary folders, plain names, the umask -------------------------------------


def test_what_a_killed_run_left_behind_is_removed_by_the_next(world, tmp_path):
    import expertlm

    stale = tmp_path / ".tok.tmp-999999999-abc"  # a process that no longer exists
    stale.mkdir()
    (stale / "junk").write_text("x")
    live = tmp_path / f".tok.tmp-{os.getpid()}-abc"  # a live one's is left alone
    live.mkdir()
    expertlm.tokenizer_train(world["corpus"], tmp_path / "tok", vocab_size=280, show_progress=False)
    assert not stale.exists() and live.exists()


def test_experiment_names_are_plain_folder_names(tmp_path):
    from expertlm.experiment import load_experiment

    p = tmp_path / "e.yaml"
    p.write_text("name: ../..\ncorpora: {d: {path: .}}\nvariants: []\n")
    with pytest.raises(ExpertlmError, match="key 'name'.*folder name"):
        load_experiment(p)


def test_outputs_follow_the_umask(world, tmp_path):
    proc = subprocess.run(
        ["sh", "-c", f"umask 022 && {sys.executable} -m expertlm tokenizer train "
                     f"{world['corpus']} --out {tmp_path / 'tok'} --vocab-size 280"],
        capture_output=True, text=True, env=ENV,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "tok").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "tok" / "expertlm_tokenizer.json").stat().st_mode & 0o777 == 0o644


# --- 17. scoring without deprecation warnings ---------------------------------------------------


def test_scoring_uses_the_current_cache_api(tmp_path):
    from expertlm.eval.scoring import Scorer
    from expertlm.tokenizer import load_tokenizer

    tok = make_tokenizer(tmp_path / "tok")
    scorer = Scorer(random_gpt2(len(load_tokenizer(tok))), load_tokenizer(tok))
    a = scorer.encode("The neuron fires and the synapse strengthens after trials.").ids
    b = scorer.encode("The neuron fires and the synapse weakens after trials.").ids
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        scorer.pair_nll([(a, b)])


# --- nothing written by a failed or killed command ----------------------------------------------


def _kill_cases(w: dict, tmp: Path) -> list[tuple[str, list]]:
    """(stage, command) of each stage, writing into a fresh folder under `tmp`."""
    run_args = ["--preset", "gpt2-tiny", "--context", "32", "--micro-batch", "2"]
    return [
        ("corpus build", ["corpus", "build", w["src"], "--out", tmp / "corpus", "--min-chars", "5"]),
        ("tokenizer train", ["tokenizer", "train", w["corpus"], "--out", tmp / "tok", "--vocab-size", "290"]),
        ("data prepare", ["data", "prepare", w["corpus"], "--tokenizer", w["tok"], "--out", tmp / "shards"]),
        ("train", ["train", w["shards"], "--out", tmp / "run", *run_args, "--max-steps", "60",
                   "--ckpt-every-steps", "20"]),
        ("eval bench", ["eval", "bench", w["bench"], "-m", w["run"], "--out", tmp / "res"]),
        ("merge", ["merge", w["run"], w["run"], "--out", tmp / "merged"]),
        ("corpus synth", ["corpus", "synth", "--out", tmp / "synth", "--papers", "300",
                          "--bench-items", "8", "--seen-items", "4"]),
    ]  # fmt: skip


KILLS = ["corpus build", "tokenizer train", "data prepare", "train", "eval bench", "merge",
         "corpus synth"]  # fmt: skip


@pytest.mark.e2e
@pytest.mark.parametrize("stage", KILLS)
def test_a_killed_stage_leaves_the_previous_output_and_the_next_run_succeeds(world, tmp_path, stage):
    """The stage runs once to the end (the previous output, and how long it takes), then again
    with --overwrite, killed (SIGKILL or SIGINT, drawn per stage) at a random point of that
    time: the previous output is as it was (a training that has written its first checkpoint
    has taken its place and resumes), nothing of the killed run is left once the next one ran,
    and the next run succeeds."""
    import random
    import signal

    rnd = random.Random(f"faults-{stage}")
    sig = rnd.choice([signal.SIGKILL, signal.SIGINT])
    cmd = dict(_kill_cases(world, tmp_path))[stage]
    out = Path(cmd[cmd.index("--out") + 1])
    t0 = time.time()
    first = cli_process(*cmd)
    assert first.returncode == 0, first.stderr[-2000:]
    took, before = time.time() - t0, digest(out)
    previous = tmp_path / "previous"
    (shutil.copytree if out.is_dir() else shutil.copy2)(out, previous)
    proc = subprocess.Popen([sys.executable, "-m", "expertlm", *map(str, cmd), "--overwrite"],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    time.sleep(rnd.uniform(0.3, 0.95) * took)
    proc.send_signal(sig)
    proc.wait(timeout=120)
    if stage == "train" and digest(out) != before:
        # the new run took the old one's place at its first good checkpoint: it resumes
        again = cli_process(*cmd, "--resume")
    else:
        # the previous output as it was, or (the signal came after the new one took its place,
        # while the process shut down) a complete new one: the same data, other timings
        assert digest(out) == before or same_data(out, previous), (stage, sig, proc.returncode)
        again = cli_process(*cmd, "--overwrite")
    assert again.returncode == 0, (stage, sig, again.stderr[-2000:])
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    assert not leftovers, (stage, sig, leftovers)  # the next run removed what the kill left


@pytest.mark.e2e
def test_a_killed_experiment_runs_again_to_the_end(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "expertlm", "demo", "--quick", "--out",
                             str(tmp_path / "demo")], env=ENV, stderr=subprocess.PIPE)  # fmt: skip
    time.sleep(9)
    proc.kill()
    proc.wait(timeout=60)
    again = cli_process("demo", "--quick", "--out", tmp_path / "demo")
    assert again.returncode == 0, again.stderr[-2000:]
    assert (tmp_path / "demo" / "report" / "index.html").is_file()
