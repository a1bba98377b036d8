"""Stages of an experiment: one call of a stage function into one output folder, with the key
that decides whether it is up to date, the content hash of its output, and the actions.

A stage's key is a hash of its options and of the content hashes of its inputs' outputs; a stage
whose folder holds the same key (`.expertlm-stage.json`) is up to date and skipped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from expertlm.console import info
from expertlm.io import read_json, sha256_file, write_json

STAGE_FILE = ".expertlm-stage.json"


# --- stages ----------------------------------------------------------------------------------


@dataclass
class Stage:
    kind: str
    label: str
    out: Path
    config: dict
    deps: list[Stage]
    action: Callable[[Stage], None]
    digest: Callable[[Path], str] | None = None  # content hash of the output (for dependants)
    key: str | None = field(default=None, init=False)
    _output_hash: str | None = field(default=None, init=False, repr=False)

    def inputs(self) -> dict[str, str]:
        return {d.label: d.output_hash() for d in self.deps}

    def output_hash(self) -> str:
        """The content hash of the output (computed once: a model's weights are read once per
        run, not once per stage that uses the model; `forget_output` after the stage reruns)."""
        if self.digest is None:
            return self.key or ""
        if self._output_hash is None:
            self._output_hash = self.digest(self.out)
        return self._output_hash

    def forget_output(self) -> None:
        self._output_hash = None

    def compute_key(self) -> str:
        blob = json.dumps({"kind": self.kind, "config": self.config, "inputs": self.inputs()},
                          sort_keys=True, default=str)  # fmt: skip
        return hashlib.sha256(blob.encode()).hexdigest()

    def recorded_key(self) -> str | None:
        f = self.out / STAGE_FILE
        if not f.is_file():
            return None
        try:
            return json.loads(f.read_text()).get("key")
        except (OSError, json.JSONDecodeError):
            return None


def corpus_digest(p: Path) -> str:
    from expertlm.corpus.docs import corpus_hash

    return corpus_hash(p)


def tokenizer_digest(p: Path) -> str:
    return sha256_file(p / "tokenizer.json") if (p / "tokenizer.json").is_file() else str(p)


def shards_digest(p: Path) -> str:
    meta = read_json(p / "meta.json")
    return hashlib.sha256(json.dumps({k: meta.get(k) for k in ("corpus_hash", "tokenizer_hash", "tokens", "dtype")},
                                     sort_keys=True).encode()).hexdigest()  # fmt: skip


def model_digest(p: Path) -> str:
    from expertlm.models import model_hash

    return model_hash(p)


def synth_digest(p: Path) -> str:
    files = [
        f
        for f in sorted(p.glob("*"))
        if f.is_file() and f.name not in (STAGE_FILE, "manifest.json")
    ]
    return hashlib.sha256("".join(sha256_file(f) for f in files).encode()).hexdigest()


def external(label: str, out: Path, digest: Callable[[Path], str]) -> Stage:
    """An input that exists outside the experiment (a file, a folder, a hub id): never run."""
    return Stage("input", label, out, {}, [], None, digest)  # type: ignore[arg-type]


def source_digest(p: Path) -> str:
    if p.is_file():
        return sha256_file(p)
    files = sorted(f for f in p.rglob("*") if f.is_file())
    return hashlib.sha256(
        "".join(f"{f.relative_to(p)}:{sha256_file(f)}" for f in files).encode()
    ).hexdigest()


# --- stage actions: each calls one stage function -----------------------------------------------


def act_synth(st: Stage, options: dict, show: bool) -> None:
    from expertlm.synth import corpus_synth

    corpus_synth(st.out, overwrite=True, show_progress=show, **options)


def act_pubmed(st: Stage, options: dict, show: bool) -> None:
    from expertlm.corpus.pubmed import corpus_pubmed

    st.out.mkdir(parents=True, exist_ok=True)  # the download resumes inside it after a stop
    corpus_pubmed(st.out / "pubmed.jsonl.gz", show_progress=show, **options)


def act_bench_fetch(st: Stage, cfg: dict) -> None:
    from expertlm.eval.fetch import bench_fetch

    bench_fetch(cfg["fetch"], st.out, from_dir=cfg["from_dir"], overwrite=True)


def act_corpus_build(st: Stage, sources: list, build: dict, show: bool) -> None:
    from expertlm.corpus.build import corpus_build

    corpus_build(sources, st.out, overwrite=True, show_progress=show, **build)


def act_tokenizer_train(st: Stage, corpus: Path, options: dict, show: bool) -> None:
    from expertlm.tokenizer import tokenizer_train

    tokenizer_train(corpus, st.out, overwrite=True, show_progress=show, **options)


def act_data_prepare(st: Stage, corpus: Path, tokenizer: Path, show: bool) -> None:
    from expertlm.shards import data_prepare

    data_prepare(corpus, st.out, tokenizer=str(tokenizer), overwrite=True, show_progress=show)


def act_init_model(st: Stage, tokenizer: Path, cfg: dict) -> None:
    from expertlm.models import save_untrained

    save_untrained(tokenizer, st.out, cfg["preset"], cfg["model"], cfg["seed"], overwrite=True)


def act_train(st: Stage, shards: Path, cfg: dict, show: bool) -> None:
    from expertlm.train import latest_checkpoint, train

    pending = st.out.parent / f".{st.out.name}.pending.json"
    resume = (
        st.out.exists() and latest_checkpoint(st.out) is not None and pending.is_file()
        and json.loads(pending.read_text()).get("key") == st.key
    )  # fmt: skip
    st.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(pending, {"key": st.key})
    if resume:
        info(f"{st.label}: resuming an interrupted run")
        train(shards, st.out, resume=True, show_progress=show, **cfg)
    else:
        train(shards, st.out, overwrite=True, show_progress=show, **cfg)
    pending.unlink(missing_ok=True)


def act_merge(st: Stage, models: list[Path], base: Path | None, options: dict, show: bool) -> None:
    from expertlm.merge import merge

    merge(models, st.out, base=base, overwrite=True, show_progress=show, **options)


def act_eval_bench(st: Stage, model: Path, bench: Path, cfg: dict, show: bool) -> None:
    from expertlm.eval.evaluate import eval_bench

    eval_bench(str(model), bench, st.out, overwrite=True, show_progress=show, **cfg)


def act_eval_ppl(st: Stage, model: Path, corpus: Path, cfg: dict, show: bool) -> None:
    from expertlm.eval.evaluate import eval_ppl

    eval_ppl(str(model), corpus, st.out, overwrite=True, show_progress=show, **cfg)


def act_eval_humans(st: Stage, participants: Path, items: str) -> None:
    from expertlm.eval.evaluate import eval_humans

    eval_humans(participants, st.out, overwrite=True, items=items)


def act_tokenizer_compare(st: Stage, tokenizers: list[Path], corpus: Path) -> None:
    from expertlm.io import atomic_dir
    from expertlm.tokenizer import tokenizer_compare

    with atomic_dir(st.out, overwrite=True) as tmp:
        tokenizer_compare([str(t) for t in tokenizers], on=corpus, out=tmp / "tokenizers.json")
