"""The command line. Thin: each command parses its options and calls the stage function of
the same name; user errors (`ExpertlmError`) become one line on stderr and exit status 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from expertlm import __version__
from expertlm.errors import ExpertlmError

app = typer.Typer(
    name="expertlm",
    help="Train small language models on a field's literature and measure whether they predict results like experts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
corpus_app = typer.Typer(
    help="Build training corpora from a field's literature.", no_args_is_help=True
)
tokenizer_app = typer.Typer(help="Train and compare tokenizers.", no_args_is_help=True)
data_app = typer.Typer(help="Tokenize corpora into training shards.", no_args_is_help=True)
app.add_typer(corpus_app, name="corpus")
app.add_typer(tokenizer_app, name="tokenizer")
app.add_typer(data_app, name="data")
bench_app = typer.Typer(help="Fetch published benchmarks.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
eval_app = typer.Typer(
    help="Score models on benchmarks and corpora; compare results; human baselines.",
    no_args_is_help=True,
)
app.add_typer(eval_app, name="eval")

Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output folder.")]
NoProgress = Annotated[bool, typer.Option("--no-progress", help="Do not show progress bars.")]


def _version(value: bool) -> None:
    if value:
        print(f"expertlm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    pass


@corpus_app.command("build")
def corpus_build_cmd(
    sources: Annotated[
        list[Path],
        typer.Argument(
            help="Files or folders (.txt, .jsonl[.gz], .json, .csv/.tsv[.gz], .parquet)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output corpus folder.")],
    text_field: Annotated[str, typer.Option(help="JSON field / column with the text.")] = "text",
    id_field: Annotated[str, typer.Option(help="JSON field / column with the document id.")] = "id",
    year_field: Annotated[
        str, typer.Option(help="JSON field / column with the publication year.")
    ] = "year",
    keep_field: Annotated[
        list[str] | None, typer.Option(help="Extra field to copy into each document (repeatable).")
    ] = None,
    unicode_form: Annotated[
        str, typer.Option(help="Unicode normalisation: NFC (lossless) or NFKC.")
    ] = "NFC",
    min_chars: Annotated[
        int, typer.Option(help="Drop documents shorter than this many characters.")
    ] = 200,
    min_year: Annotated[
        int | None, typer.Option(help="Drop documents published before this year.")
    ] = None,
    max_year: Annotated[
        int | None, typer.Option(help="Drop documents published after this year.")
    ] = None,
    keep_no_year: Annotated[
        bool,
        typer.Option(
            "--keep-no-year/--drop-no-year",
            help="Keep documents with no year when filtering by year.",
        ),
    ] = True,
    dedup: Annotated[
        bool, typer.Option("--dedup/--no-dedup", help="Drop exact duplicates.")
    ] = True,
    near_dedup: Annotated[
        bool,
        typer.Option("--near-dedup/--no-near-dedup", help="Drop near duplicates (MinHash LSH)."),
    ] = True,
    near_threshold: Annotated[
        float,
        typer.Option(
            help="Jaccard similarity of word shingles above which a document is a near duplicate."
        ),
    ] = 0.8,
    num_perm: Annotated[int, typer.Option(help="MinHash permutations.")] = 128,
    shingle_words: Annotated[int, typer.Option(help="Words per shingle.")] = 5,
    decontam: Annotated[
        list[Path] | None,
        typer.Option(
            help="Benchmark file (BrainBench CSV or JSONL): drop documents sharing a word n-gram with it (repeatable)."
        ),
    ] = None,
    decontam_ngram: Annotated[int, typer.Option(help="Words per n-gram for decontamination.")] = 13,
    val_frac: Annotated[
        float, typer.Option(help="Fraction of documents in the validation split.")
    ] = 0.01,
    split_seed: Annotated[
        int, typer.Option(help="Seed of the hash-based train/validation split.")
    ] = 0,
    skip_bad: Annotated[
        bool,
        typer.Option("--skip-bad", help="Count and skip malformed records instead of stopping."),
    ] = False,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
) -> None:
    """Clean, filter, deduplicate, decontaminate and split source documents into a corpus."""
    from expertlm.corpus.build import corpus_build

    corpus_build(
        sources, out, overwrite=overwrite, show_progress=not no_progress,
        text_field=text_field, id_field=id_field, year_field=year_field, keep_fields=keep_field or [],
        unicode_form=unicode_form, min_chars=min_chars, min_year=min_year, max_year=max_year,
        keep_no_year=keep_no_year, dedup=dedup, near_dedup=near_dedup, near_threshold=near_threshold,
        num_perm=num_perm, shingle_words=shingle_words, decontam=decontam or [],
        decontam_ngram=decontam_ngram, val_frac=val_frac, split_seed=split_seed, skip_bad=skip_bad,
    )  # fmt: skip


@corpus_app.command("synth")
def corpus_synth_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    seed: Annotated[
        int, typer.Option(help="Seed: the same seed and options give the same bytes.")
    ] = 0,
    field: Annotated[
        str,
        typer.Option(help="domain (neuroscience-like) or general (another field, same machinery)."),
    ] = "domain",
    papers: Annotated[int, typer.Option(help="Papers in the literature.")] = 2400,
    noise: Annotated[
        float, typer.Option(help="Fraction of published findings flipped, in [0, 0.5).")
    ] = 0.1,
    latent_only: Annotated[
        bool,
        typer.Option(
            "--latent-only", help="Effects from latent vectors only; no class cues in the text."
        ),
    ] = False,
    years: Annotated[str, typer.Option(help="Years of the literature, FIRST-LAST.")] = "2002-2022",
    bench_year: Annotated[int, typer.Option(help="Year of the benchmark papers.")] = 2023,
    bench_items: Annotated[
        int, typer.Option(help="Forward benchmark items (pairs never reported).")
    ] = 200,
    seen_items: Annotated[
        int, typer.Option(help="Memorisation-check items (pairs reported in the literature).")
    ] = 100,
    targets: Annotated[
        int, typer.Option(help="Targets (structures; crop lines when general).")
    ] = 18,
    outcomes: Annotated[int, typer.Option(help="Outcome measures.")] = 9,
    systems: Annotated[
        int, typer.Option(help="Classes of the system attribute (the sections).")
    ] = 3,
    types: Annotated[int, typer.Option(help="Classes of the type attribute.")] = 2,
    rank: Annotated[int, typer.Option(help="Dimension of the latent vectors.")] = 3,
    holdout: Annotated[
        int, typer.Option(help="Outcomes per target never reported (the forward pairs).")
    ] = 3,
    latent_noise: Annotated[
        float, typer.Option(help="Spread of targets' latent vectors around their classes'.")
    ] = 0.2,
    min_findings: Annotated[int, typer.Option(help="Fewest findings per paper.")] = 2,
    max_findings: Annotated[int, typer.Option(help="Most findings per paper.")] = 3,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
) -> None:
    """Generate a synthetic field: world, literature (a corpus source), benchmark, ceilings."""
    from expertlm.synth import corpus_synth

    corpus_synth(
        out, overwrite=overwrite, show_progress=not no_progress, seed=seed, field=field,
        papers=papers, noise=noise, latent_only=latent_only, years=years, bench_year=bench_year,
        bench_items=bench_items, seen_items=seen_items, targets=targets, outcomes=outcomes,
        systems=systems, types=types, rank=rank, holdout=holdout, latent_noise=latent_noise,
        min_findings=min_findings, max_findings=max_findings,
    )  # fmt: skip


@corpus_app.command("pubmed")
def corpus_pubmed_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file (.jsonl or .jsonl.gz).")],
    query: Annotated[str | None, typer.Option(help="PubMed query (E-utilities syntax).")] = None,
    journals: Annotated[
        str | None,
        typer.Option(
            help="Journal list file (one name per line), or `neuro` for the bundled 100 neuroscience journals."
        ),
    ] = None,
    from_year: Annotated[int, typer.Option("--from", help="First publication year.")] = 2002,
    to_year: Annotated[int, typer.Option("--to", help="Last publication year.")] = 2022,
    email: Annotated[
        str | None, typer.Option(help="Your contact address, sent to NCBI with every request.")
    ] = None,
    tool: Annotated[str, typer.Option(help="Tool name sent to NCBI (one word).")] = "expertlm",
    api_key_env: Annotated[
        str,
        typer.Option(
            help="Environment variable with an NCBI API key (10 requests/s instead of 3; the key is never written anywhere)."
        ),
    ] = "NCBI_API_KEY",
    batch_size: Annotated[int, typer.Option(help="Records per EFetch request.")] = 200,
    base_url: Annotated[
        str, typer.Option(help="E-utilities base URL.")
    ] = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/",
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="Start over, replacing the output and its saved progress."
        ),
    ] = False,
    no_progress: NoProgress = False,
) -> None:
    """Download PubMed abstracts into a corpus source file; a re-run resumes an interrupted one."""
    from expertlm.corpus.pubmed import corpus_pubmed

    corpus_pubmed(
        out, query=query, journals=journals, from_year=from_year, to_year=to_year, email=email,
        tool=tool, api_key_env=api_key_env, batch_size=batch_size, base_url=base_url,
        overwrite=overwrite, show_progress=not no_progress,
    )  # fmt: skip


@corpus_app.command("pmc")
def corpus_pmc_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file (.jsonl or .jsonl.gz).")],
    query: Annotated[str | None, typer.Option(help="PubMed Central query.")] = None,
    journals: Annotated[
        str | None,
        typer.Option(help="Journal list file, or `neuro` for the bundled neuroscience list."),
    ] = None,
    from_year: Annotated[int | None, typer.Option("--from", help="First publication year.")] = None,
    to_year: Annotated[int | None, typer.Option("--to", help="Last publication year.")] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Folder for pubget's downloads (default: pubget_data beside --out)."),
    ] = None,
    pubget_dir: Annotated[
        Path | None,
        typer.Option(help="Convert this existing pubget output instead of downloading."),
    ] = None,
    api_key_env: Annotated[
        str, typer.Option(help="Environment variable with an NCBI API key.")
    ] = "NCBI_API_KEY",
    overwrite: Overwrite = False,
) -> None:
    """Open-access full texts from PubMed Central (via pubget: pip install 'expertlm[pmc]')."""
    from expertlm.corpus.pmc import corpus_pmc

    corpus_pmc(
        out, query=query, journals=journals, from_year=from_year, to_year=to_year,
        data_dir=data_dir, pubget_dir=pubget_dir, api_key_env=api_key_env, overwrite=overwrite,
    )  # fmt: skip


@bench_app.command("fetch")
def bench_fetch_cmd(
    name: Annotated[str, typer.Argument(help="Benchmark to fetch: brainbench.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    base_url: Annotated[
        str, typer.Option(help="Base URL of the raw files (GitHub's by default).")
    ] = "https://raw.githubusercontent.com/",
    from_dir: Annotated[
        Path | None,
        typer.Option(help="Take the files from this folder (downloaded by hand) instead."),
    ] = None,
    overwrite: Overwrite = False,
) -> None:
    """Download and check a published benchmark (test cases and human participant data)."""
    from expertlm.eval.fetch import bench_fetch

    bench_fetch(name, out, base_url=base_url, from_dir=from_dir, overwrite=overwrite)


@tokenizer_app.command("train")
def tokenizer_train_cmd(
    corpus: Annotated[Path, typer.Argument(help="Corpus folder (its train split is used).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output tokenizer folder.")],
    vocab_size: Annotated[
        int, typer.Option(help="Vocabulary size, <|endoftext|> included.")
    ] = 50_257,
    min_frequency: Annotated[int, typer.Option(help="Minimum pair frequency for a merge.")] = 2,
    max_docs: Annotated[
        int | None, typer.Option(help="Train on the first N documents only.")
    ] = None,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
) -> None:
    """Train a GPT-2-style byte-level BPE tokenizer on a corpus."""
    from expertlm.tokenizer import tokenizer_train

    tokenizer_train(
        corpus, out, overwrite=overwrite, show_progress=not no_progress,
        vocab_size=vocab_size, min_frequency=min_frequency, max_docs=max_docs,
    )  # fmt: skip


@tokenizer_app.command("compare")
def tokenizer_compare_cmd(
    tokenizers: Annotated[
        list[str],
        typer.Argument(
            help="Two or more tokenizer folders (or hub ids where the network is there)."
        ),
    ],
    on: Annotated[Path, typer.Option("--on", help="Corpus folder to measure on.")],
    split: Annotated[str, typer.Option(help="Corpus split to measure on.")] = "val",
    max_docs: Annotated[int, typer.Option(help="Documents to sample.")] = 1000,
    top: Annotated[int, typer.Option(help="Split words listed per tokenizer.")] = 15,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the comparison as JSON here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Compare tokenizers on a corpus: fertility, characters per token, words kept whole."""
    from expertlm.tokenizer import tokenizer_compare

    result = tokenizer_compare(tokenizers, on=on, split=split, max_docs=max_docs, top=top, out=out)
    if as_json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        _print_comparison(result)


def _print_comparison(result: dict) -> None:
    from rich.console import Console
    from rich.markup import escape  # tokenizer names and paths are text, not markup
    from rich.table import Table

    console = Console()
    table = Table(
        title=escape(f"{result['docs']:,} documents of {result['corpus']} ({result['split']})")
    )
    for col in ("tokenizer", "vocab", "tokens", "tokens/word", "chars/token", "whole words"):
        table.add_column(col, justify="left" if col == "tokenizer" else "right")
    for r in result["tokenizers"]:
        table.add_row(
            escape(r["tokenizer"]), f"{r['vocab_size']:,}", f"{r['tokens']:,}", f"{r['fertility']:.3f}",
            f"{r['chars_per_token']:.3f}", f"{r['whole_word_share']:.1%}",
        )  # fmt: skip
    console.print(table)
    for r in result["tokenizers"]:
        words = Table(title=escape(f"most frequent words split by {r['tokenizer']}"))
        words.add_column("word")
        words.add_column("count", justify="right")
        words.add_column("pieces")
        for w in r["split_words"]:
            words.add_row(w["word"], f"{w['count']:,}", " | ".join(w["pieces"]))
        console.print(words)


@data_app.command("prepare")
def data_prepare_cmd(
    corpus: Annotated[Path, typer.Argument(help="Corpus folder.")],
    tokenizer: Annotated[
        str, typer.Option("--tokenizer", "-t", help="Tokenizer folder (or hub id).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output shards folder.")],
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
) -> None:
    """Tokenize a corpus into flat token files (train.bin, val.bin, meta.json)."""
    from expertlm.shards import data_prepare

    data_prepare(
        corpus, out, tokenizer=tokenizer, overwrite=overwrite, show_progress=not no_progress
    )


def _overrides(items: list[str] | None) -> dict:
    """`key=value` pairs; values parsed as JSON where they can be (4 -> int, 0.1 -> float)."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ExpertlmError(f"option --model {item!r}: expected FIELD=VALUE (e.g. n_layer=4)")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


@app.command("train")
def train_cmd(
    shards: Annotated[Path, typer.Argument(help="Shards folder (from `expertlm data prepare`).")],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Run folder (a Hugging Face model folder at the end)."),
    ],
    preset: Annotated[
        str, typer.Option(help="gpt2-tiny, gpt2-mini, gpt2-small, gpt2-medium, gpt2-large.")
    ] = "gpt2-mini",
    model: Annotated[
        list[str] | None, typer.Option(help="Override a preset field, FIELD=VALUE (repeatable).")
    ] = None,
    init: Annotated[
        str, typer.Option(help="scratch, or a model folder / hub id to continue pretraining.")
    ] = "scratch",
    seed: Annotated[int, typer.Option(help="Seed of the weights and the data order.")] = 0,
    context: Annotated[
        int | None, typer.Option(help="Tokens per window (default: the model's maximum).")
    ] = None,
    micro_batch: Annotated[int, typer.Option(help="Windows per forward pass per process.")] = 8,
    batch_tokens: Annotated[
        int | None, typer.Option(help="Global batch in tokens (gradient accumulation).")
    ] = None,
    max_steps: Annotated[int | None, typer.Option(help="Optimizer steps.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Tokens to train on.")] = None,
    epochs: Annotated[float | None, typer.Option(help="Passes over the data (default 1).")] = None,
    max_time: Annotated[
        float | None, typer.Option("--max-time", help="Stop after this many seconds.")
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(help="Peak learning rate (default 6e-4 scratch, 1e-4 continued)."),
    ] = None,
    warmup_steps: Annotated[
        int | None, typer.Option(help="Warm-up steps (default 5% of the run).")
    ] = None,
    schedule: Annotated[str, typer.Option(help="cosine or linear decay.")] = "cosine",
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay (matrices only).")] = 0.1,
    grad_clip: Annotated[float, typer.Option(help="Gradient norm clip (0: off).")] = 1.0,
    bf16: Annotated[bool, typer.Option("--bf16", help="bf16 autocast.")] = False,
    compile_: Annotated[bool, typer.Option("--compile", help="torch.compile the model.")] = False,
    fsdp: Annotated[
        bool, typer.Option("--fsdp", help="Shard the model over processes (FSDP2) instead of DDP.")
    ] = False,
    val_every_steps: Annotated[int, typer.Option(help="Validation every N steps.")] = 100,
    log_every_steps: Annotated[int, typer.Option(help="metrics.jsonl row every N steps.")] = 10,
    ckpt_every_steps: Annotated[int, typer.Option(help="Checkpoint every N steps.")] = 500,
    keep_last: Annotated[int, typer.Option(help="Checkpoints kept.")] = 2,
    peak_tflops: Annotated[float | None, typer.Option(help="Device peak TFLOP/s for MFU.")] = None,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda, cuda:N (default: cuda if available).")
    ] = None,
    lora: Annotated[
        str | None,
        typer.Option(
            help="Train LoRA adapters on the frozen --init model, e.g. r=8,alpha=16,dropout=0,"
            "targets=c_attn,c_proj (any subset; checkpoints hold the adapters only)."
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the run's latest checkpoint.")
    ] = False,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
) -> None:
    """Train a GPT-2-family model from scratch, or continue pretraining one, on shards."""
    from expertlm.train import train

    train(
        shards, out, resume=resume, overwrite=overwrite, show_progress=not no_progress,
        preset=preset, model=_overrides(model), init=init, seed=seed, context=context,
        micro_batch=micro_batch, batch_tokens=batch_tokens, max_steps=max_steps,
        max_tokens=max_tokens, epochs=epochs, max_time_s=max_time, lr=lr,
        warmup_steps=warmup_steps, schedule=schedule, weight_decay=weight_decay,
        grad_clip=grad_clip, bf16=bf16, compile=compile_, fsdp=fsdp, val_every_steps=val_every_steps,
        log_every_steps=log_every_steps, ckpt_every_steps=ckpt_every_steps, keep_last=keep_last,
        peak_tflops=peak_tflops, device=device, **({"lora": lora} if lora is not None else {}),
    )  # fmt: skip


@app.command("merge")
def merge_cmd(
    models: Annotated[
        list[Path], typer.Argument(help="Model folders (same architecture and tokenizer).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output model folder.")],
    method: Annotated[
        str, typer.Option(help="linear, slerp (two models), ties or task_arithmetic (need --base).")
    ] = "linear",
    weights: Annotated[
        str | None,
        typer.Option(
            help="One weight per model, e.g. 0.7,0.3 (linear: normalised; default equal)."
        ),
    ] = None,
    t: Annotated[
        float | None, typer.Option("--t", help="slerp: 0 = first model, 1 = second (default 0.5).")
    ] = None,
    base: Annotated[
        Path | None,
        typer.Option(help="ties, task_arithmetic: the model the task vectors are relative to."),
    ] = None,
    density: Annotated[
        float | None,
        typer.Option(help="ties: fraction of each task vector kept, by magnitude (default 0.2)."),
    ] = None,
    lam: Annotated[
        float | None,
        typer.Option(
            "--lambda", help="ties, task_arithmetic: scale of the merged task vector (default 1)."
        ),
    ] = None,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
) -> None:
    """Merge same-architecture models tensor by tensor (linear, SLERP, TIES, task arithmetic)."""
    from expertlm.merge import merge

    merge(
        models, out, method=method, weights=_floats(weights, "weights"), t=t, base=base,
        density=density, lam=lam, overwrite=overwrite, show_progress=not no_progress,
    )  # fmt: skip


def _floats(value: str | None, key: str) -> list[float] | None:
    if value is None:
        return None
    try:
        return [float(v) for v in value.split(",")]
    except ValueError:
        raise ExpertlmError(
            f"option --{key}: expected comma-separated numbers, e.g. 0.5,0.5 (got {value!r})"
        ) from None


@app.command("export")
def export_cmd(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output model folder.")],
    merge_lora: Annotated[
        bool,
        typer.Option("--merge-lora", help="Merge a LoRA run's adapters into its base model."),
    ] = False,
    overwrite: Overwrite = False,
) -> None:
    """Write a run as a plain Hugging Face model folder (a LoRA run: --merge-lora)."""
    from expertlm.lora import export

    export(run, out, merge_lora=merge_lora, overwrite=overwrite)


# --- eval ------------------------------------------------------------------------------------

BatchSize = Annotated[
    int | None, typer.Option(help="Sequences per forward pass (default: 1 on CPU, auto on GPU).")
]
Stride = Annotated[
    int | None,
    typer.Option(help="Sliding-window stride for texts longer than the context (default: half)."),
]
Device = Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N (default: cuda if available).")]
Dtype = Annotated[
    str, typer.Option(help="auto, float32, bfloat16, float16 (log-probs are float32 always).")
]
PaddingSide = Annotated[str, typer.Option(help="Pad batches on the right or left.")]


@eval_app.command("bench")
def eval_bench_cmd(
    bench: Annotated[Path, typer.Argument(help="Benchmark: BrainBench CSV or JSONL.")],
    model: Annotated[
        str,
        typer.Option("--model", "-m", help="Causal LM folder (or hub id where the network is)."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Results folder.")],
    template: Annotated[
        str, typer.Option(help="Prompt: none, neuro, or any string with one {abstract}.")
    ] = "none",
    repair: Annotated[
        bool,
        typer.Option("--repair", help="Re-derive versions from [[a, b]] markers; drop bad rows."),
    ] = False,
    isolated: Annotated[
        bool, typer.Option("--isolated", help="Also score each changed sentence on its own.")
    ] = False,
    reduction: Annotated[str, typer.Option(help="mean (published) or sum NLL.")] = "mean",
    score_template: Annotated[
        bool,
        typer.Option(
            "--score-template/--exclude-template",
            help="Score the template's tokens too (published) or only the abstract's.",
        ),
    ] = True,
    bos: Annotated[
        str, typer.Option(help="auto (the tokenizer's default), yes (prepend BOS) or no.")
    ] = "auto",
    share_prefix: Annotated[
        bool,
        typer.Option(
            "--share-prefix/--no-share-prefix",
            help="Run the versions' shared prefix once (same numbers, faster).",
        ),
    ] = True,
    bins: Annotated[int, typer.Option(help="Calibration bins.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and regression folds.")] = 0,
    batch_size: BatchSize = None,
    stride: Stride = None,
    padding_side: PaddingSide = "right",
    device: Device = None,
    dtype: Dtype = "auto",
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
) -> None:
    """Score a model on a two-alternative benchmark: items.csv and summary.json."""
    from expertlm.eval.evaluate import eval_bench

    eval_bench(
        model, bench, out, overwrite=overwrite, show_progress=not no_progress, template=template,
        repair=repair, isolated=isolated, reduction=reduction, score_template=score_template,
        bos=_tristate(bos, "bos"), share_prefix=share_prefix, bins=bins, seed=seed,
        batch_size=batch_size, stride=stride, padding_side=padding_side, device=device, dtype=dtype,
    )  # fmt: skip


def _tristate(value: str, key: str) -> bool | None:
    table = {"auto": None, "yes": True, "no": False}
    if value not in table:
        raise ExpertlmError(f"option --{key}: expected auto, yes or no (got {value!r})")
    return table[value]


@eval_app.command("ppl")
def eval_ppl_cmd(
    model: Annotated[
        str,
        typer.Option("--model", "-m", help="Causal LM folder (or hub id where the network is)."),
    ],
    corpus: Annotated[
        Path, typer.Option("--corpus", "-c", help="Corpus folder, or a .jsonl(.gz) of documents.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Results folder (ppl.json).")],
    split: Annotated[str, typer.Option(help="Corpus split.")] = "val",
    max_docs: Annotated[int | None, typer.Option(help="Score the first N documents.")] = None,
    batch_size: BatchSize = None,
    stride: Stride = None,
    padding_side: PaddingSide = "right",
    device: Device = None,
    dtype: Dtype = "auto",
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
) -> None:
    """Bits per byte and per-token perplexity of a model on held-out text."""
    from expertlm.eval.evaluate import eval_ppl

    eval_ppl(
        model, corpus, out, overwrite=overwrite, show_progress=not no_progress, split=split,
        max_docs=max_docs, batch_size=batch_size, stride=stride, padding_side=padding_side,
        device=device, dtype=dtype,
    )  # fmt: skip


@eval_app.command("compare")
def eval_compare_cmd(
    a: Annotated[Path, typer.Argument(help="Results folder A.")],
    b: Annotated[Path, typer.Argument(help="Results folder B (the difference is B - A).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Also write JSON here.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the paired bootstrap.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Paired comparison on the same items: McNemar exact test, bootstrap CI of B - A."""
    from expertlm.eval.evaluate import eval_compare

    r = eval_compare(a, b, out=out, seed=seed)
    if as_json:
        print(json.dumps(r, indent=2))
        return
    d, m = r["b_minus_a"], r["mcnemar"]
    print(
        f"{r['n']} items: A {r['accuracy_a']:.3f}, B {r['accuracy_b']:.3f}, "
        f"B - A {d['difference']:+.3f} (95% CI {d['ci95'][0]:+.3f} to {d['ci95'][1]:+.3f}); "
        f"McNemar exact p = {m['p_value']:.4g} ({m['only_a_correct']} only A right, "
        f"{m['only_b_correct']} only B right)"
    )


@eval_app.command("humans")
def eval_humans_cmd(
    participants: Annotated[
        Path, typer.Argument(help="Participant data CSV (BrainBench format, one row per trial).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Results folder (summary.json).")],
    items: Annotated[
        str, typer.Option(help="Trials on human-written items, machine-written, or all.")
    ] = "human",
    top_pct: Annotated[
        float, typer.Option(help="Top share of expertise per abstract for the expert accuracy.")
    ] = 0.2,
    bins: Annotated[int, typer.Option(help="Calibration bins.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and regression folds.")] = 0,
    overwrite: Overwrite = False,
) -> None:
    """Human accuracy (pooled over trials), per section, top expertise, calibration."""
    from expertlm.eval.evaluate import eval_humans

    eval_humans(participants, out, overwrite=overwrite, items=items, top_pct=top_pct, bins=bins,
                seed=seed)  # fmt: skip


# --- run, report, demo -------------------------------------------------------------------------


@app.command("run")
def run_cmd(
    experiment: Annotated[Path, typer.Argument(help="Experiment file (YAML).")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder (default: runs/NAME).")
    ] = None,
    profile: Annotated[
        str | None, typer.Option(help="A named profile of overrides in the file (e.g. quick).")
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Validate and print the plan with token and FLOP budgets."),
    ] = False,
    no_report: Annotated[
        bool, typer.Option("--no-report", help="Do not write the report.")
    ] = False,
    no_progress: NoProgress = False,
) -> None:
    """Run an experiment: every stage in dependency order, skipping what is up to date."""
    from expertlm.experiment import run

    run(experiment, out=out, profile=profile, dry_run=dry_run, report=not no_report,
        show_progress=not no_progress)  # fmt: skip


@app.command("report")
def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="An experiment's output folder.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Report folder (default: RUN_DIR/report).")
    ] = None,
) -> None:
    """Figures and tables of an experiment: index.html, report.md, PNGs, tables.csv."""
    from expertlm.experiment.report import report

    report(run_dir, out)


@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("runs/demo"),
    quick: Annotated[
        bool, typer.Option("--quick", help="A tiny version in under two minutes (for tests).")
    ] = False,
    no_progress: NoProgress = False,
) -> None:
    """The paper's experiment on the bundled synthetic field, offline, with its report."""
    from expertlm.experiment import demo

    demo(out, quick=quick, show_progress=not no_progress)


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, standalone_mode=True)
    except ExpertlmError as e:
        from rich.markup import escape

        from expertlm.console import console

        lines = str(e).splitlines() or ["error"]
        for line in lines:
            console.print(
                f"[bold red]error:[/] {escape(line)}", markup=True, highlight=False, soft_wrap=True
            )
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
