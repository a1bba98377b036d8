"""Typed, validated configuration of every stage: the one place an option is declared.

Each stage's options are one pydantic model whose field docstrings are the documentation: the
command line is generated from these models (`cli.py`: flag names from field names, help from
the docstrings, defaults from the models), `expertlm run` validates an experiment's stage
options through the same models, and the Python functions take them as keyword arguments.
`from_options` validates a plain dict (CLI flags, a YAML section, Python keyword arguments) and
reports every problem at once, each naming its key, as one `ExpertlmError`.
"""

from __future__ import annotations

import contextvars
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from expertlm.errors import ExpertlmError

# 256 byte symbols of byte-level BPE plus <|endoftext|>.
MIN_VOCAB_SIZE = 257
# The fields corpus build writes into every document itself (--keep-field cannot copy onto them).
RESERVED_FIELDS = ("id", "text", "year", "source")
# Device names (whether this machine has one is `dist.pick_device`'s question).
DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
# --shard I/N: task I of N (corpus/shard.py assigns the documents).
SHARD = re.compile(r"(\d+)/(\d+)")

# Flags that are not the field's name with dashes (the CLI and every error message use these).
FLAGS = {"from_year": "--from", "to_year": "--to", "lam": "--lambda", "max_time_s": "--max-time",
         "keep_fields": "--keep-field"}  # fmt: skip
# The "off" flag of a boolean, where it is not --no-NAME.
OFF_FLAGS = {"keep_no_year": "--drop-no-year", "score_template": "--exclude-template"}


def flag(name: str) -> str:
    """The command-line flag of option `name` (`min_chars` -> `--min-chars`, `lam` -> `--lambda`)."""
    return FLAGS.get(name, "--" + name.replace("_", "-"))


# Set by the command line: option problems then name the flag alone (`option --min-chars: ...`).
COMMAND_LINE = contextvars.ContextVar("expertlm_command_line", default=False)


def format_validation_error(err: ValidationError | list[dict], source: str) -> str:
    """One line per problem, naming the key: `SOURCE: key 'a.b': message` for a config file,
    `option 'min_chars' (--min-chars): message` for stage options given as keywords, and
    `option --min-chars: message` on the command line."""
    lines = []
    for e in err.errors() if isinstance(err, ValidationError) else err:
        key = ".".join(str(p) for p in e["loc"])
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        msg = msg.removeprefix("Value error, ")
        if not key:  # a check across keys (e.g. min_year > max_year): its message names them
            lines.append(f"{'options' if source == 'option' else source}: {msg}")
        elif source == "option" and COMMAND_LINE.get():
            first, *rest = (str(p) for p in e["loc"])
            lines.append(f"option {flag(first)}{' ' + '.'.join(rest) if rest else ''}: {msg}")
        elif source == "option":
            lines.append(f"option '{key}' ({flag(str(e['loc'][0]))}): {msg}")
        else:
            lines.append(f"{source}: key '{key}': {msg}")
    return "\n".join(lines)


class StageConfig(BaseModel):
    """The options of one stage (inputs and the output are the function's own arguments)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)

    @classmethod
    def from_options(cls, options: dict[str, Any] | None = None, source: str = "option"):
        """Validate `options`; every bad or unknown key is reported at once."""
        errors = cls.problems(options)
        if errors:
            raise ExpertlmError(format_validation_error(errors, source))
        return cls.model_validate(options or {})

    @classmethod
    def problems(cls, options: dict[str, Any] | None) -> list[dict]:
        """pydantic's errors for `options`, all in one round: the checks across fields (which
        pydantic runs only when every field is valid) run again on the valid fields."""
        options = options or {}
        try:
            cls.model_validate(options)
            return []
        except ValidationError as e:
            errors = e.errors()
        bad = {err["loc"][0] for err in errors if err["loc"]}
        if bad:
            try:
                cls.model_validate({k: v for k, v in options.items() if k not in bad})
            except ValidationError as e:
                errors += [err for err in e.errors() if not err["loc"]]
        return errors


def _shard_spec(v: str | None) -> str | None:
    m = SHARD.fullmatch(v.strip()) if v is not None else None
    if v is not None and not (m and int(m.group(1)) < int(m.group(2))):
        raise ValueError(f"{v!r}: expected I/N with 0 <= I < N, e.g. 0/16")
    return v


class ShardOptions(StageConfig):
    """`--shard I/N` and `--merge DIR` (corpus/shard.py), taken by `corpus build`, `corpus
    filter` and `data prepare`: the per-document work split over N tasks, then merged."""

    shard: str | None = None
    """I/N: do only task I's share of the per-document work (0 <= I < N, documents by a hash of
    their position) into --out, for a later --merge (e.g. one Slurm array task each)."""
    merge: Path | None = None
    """Folder of the N --shard I/N outputs to merge (the same inputs and options)."""

    _shard = field_validator("shard")(_shard_spec)

    @model_validator(mode="after")
    def _one_role(self) -> ShardOptions:
        if self.shard is not None and self.merge is not None:
            raise ValueError("--shard and --merge: a task either does a shard or merges them")
        return self


class CorpusConfig(ShardOptions):
    """Options of `corpus build`."""

    text_field: str = "text"
    """JSON field or CSV/TSV/Parquet column that holds the document text."""
    id_field: str = "id"
    """Field/column with the document id; a document without one gets the hash of its text."""
    year_field: str = "year"
    """Field/column with the publication year (an int, or a string starting with 4 digits)."""
    keep_fields: list[str] = Field(default_factory=list)
    """Other fields copied into each corpus document (e.g. journal, doi)."""
    unicode_form: Literal["NFC", "NFKC"] = "NFC"
    """Unicode normalisation. NFC is lossless; NFKC also folds compatibility forms (² -> 2)."""
    min_chars: int = Field(200, ge=0)
    """Documents shorter than this (after cleaning) are dropped."""
    min_year: int | None = None
    """Drop documents published before this year."""
    max_year: int | None = None
    """Drop documents published after this year (the paper trains on <= 2022, tests on 2023)."""
    keep_no_year: bool = True
    """Keep documents with no year when a year filter is set."""
    dedup: bool = True
    """Drop exact duplicates (same text after cleaning)."""
    near_dedup: bool = True
    """Drop near duplicates (MinHash + LSH over word shingles)."""
    near_threshold: float = Field(0.8, gt=0.0, le=1.0)
    """Estimated Jaccard similarity of word shingles at which a document is a near duplicate."""
    num_perm: int = Field(128, ge=16, le=1024)
    """MinHash permutations (more: a finer Jaccard estimate, more memory)."""
    shingle_words: int = Field(5, ge=1)
    """Words per shingle for near-duplicate detection."""
    decontam: list[Path] = Field(default_factory=list)
    """Benchmark files (BrainBench CSV or JSONL); documents sharing a word n-gram with any
    version of any item are dropped."""
    decontam_ngram: int = Field(13, ge=1)
    """Length in words of the n-grams used for decontamination."""
    val_frac: float = Field(0.01, ge=0.0, lt=1.0)
    """Fraction of documents in the validation split (chosen by a hash of the id)."""
    split_seed: int = 0
    """Seed of the hash-based split."""
    skip_bad: bool = False
    """Count and skip malformed records instead of stopping at the first."""
    workers: int | None = Field(None, ge=1)
    """Worker processes for cleaning, hashing and MinHash (default: one per core, or none for
    inputs under 8 MB); the output is the same for any number."""

    @field_validator("keep_fields")
    @classmethod
    def _not_reserved(cls, v: list[str]) -> list[str]:
        reserved = [f for f in v if f in RESERVED_FIELDS]
        if reserved:
            raise ValueError(f"{', '.join(reserved)}: a corpus document's own field (id, text, "
                             "year, source are set by the build; copy another field)")
        return v

    @model_validator(mode="after")
    def _years_ordered(self) -> CorpusConfig:
        if (
            self.min_year is not None
            and self.max_year is not None
            and self.min_year > self.max_year
        ):
            raise ValueError(f"min_year {self.min_year} is after max_year {self.max_year}")
        return self


def _path_text(v: Any) -> Any:
    """A path given where the option is text that may also be a name (`--journals neuro`)."""
    return str(v) if isinstance(v, Path) else v


def _device_name(v: str | None) -> str | None:
    if v is not None and not DEVICE.fullmatch(v):
        raise ValueError(f"unknown device '{v}' (cpu, cuda, cuda:N, mps, auto)")
    return v


class PubmedConfig(StageConfig):
    """Options of `corpus pubmed`."""

    query: str | None = None
    """PubMed query (E-utilities syntax), alone or ANDed with the journal list."""
    journals: str | None = None
    """Journal list file (one name per line), or `neuro` for the bundled 100 neuroscience journals."""
    from_year: int = 2002
    """First publication year."""
    to_year: int = 2022
    """Last publication year."""
    email: str | None = None
    """Your contact address, sent to NCBI with every request (NCBI asks every user for one)."""
    tool: str = "expertlm"
    """Tool name sent to NCBI (one word)."""
    api_key_env: str = "NCBI_API_KEY"
    """Environment variable holding an NCBI API key (10 requests/s instead of 3; the key is never
    written anywhere)."""
    batch_size: int = Field(200, ge=1, le=10_000)
    """Records per EFetch request (at most 10,000, EFetch's largest)."""
    base_url: str = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/"
    """E-utilities base URL."""

    _journals = field_validator("journals", mode="before")(_path_text)

    @field_validator("tool")
    @classmethod
    def _one_word(cls, v: str) -> str:
        if not v or any(c.isspace() for c in v):
            raise ValueError(f"{v!r} must be one word (NCBI's rule)")
        return v

    @model_validator(mode="after")
    def _years(self) -> PubmedConfig:
        if not 1800 <= self.from_year <= self.to_year <= 2100:
            raise ValueError(f"--from/--to: {self.from_year}..{self.to_year} is not a range of years")
        return self


class PmcConfig(StageConfig):
    """Options of `corpus pmc`."""

    query: str | None = None
    """PubMed Central query."""
    journals: str | None = None
    """Journal list file, or `neuro` for the bundled neuroscience list."""
    from_year: int | None = None
    """First publication year."""
    to_year: int | None = None
    """Last publication year."""
    data_dir: Path | None = None
    """Folder for pubget's downloads (default: pubget_data beside the output)."""
    pubget_dir: Path | None = None
    """Convert this existing pubget output instead of downloading."""
    api_key_env: str = "NCBI_API_KEY"
    """Environment variable holding an NCBI API key."""

    _journals = field_validator("journals", mode="before")(_path_text)


class FetchConfig(StageConfig):
    """Options of `bench fetch`."""

    name: Literal["brainbench"] = "brainbench"
    """The published benchmark to fetch (brainbench)."""
    base_url: str = "https://raw.githubusercontent.com/"
    """Base URL of the raw files (GitHub's by default)."""
    from_dir: Path | None = None
    """Take the files from this folder (downloaded by hand) instead of the network."""


class TokenizerConfig(StageConfig):
    """Options of `tokenizer train`."""

    vocab_size: int = 50_257
    """Vocabulary size including <|endoftext|> (GPT-2's is 50,257)."""
    min_frequency: int = Field(2, ge=1)
    """A pair must occur this often to be merged."""
    max_docs: int | None = Field(None, ge=1)
    """Train on the first N training documents only (default: all)."""

    @field_validator("vocab_size")
    @classmethod
    def _vocab_fits(cls, v: int) -> int:
        if v < MIN_VOCAB_SIZE:
            raise ValueError(
                f"vocab size {v} is below the byte alphabet: byte-level BPE needs at least "
                f"{MIN_VOCAB_SIZE} (256 bytes + <|endoftext|>)"
            )
        if v > 2**32:
            raise ValueError(f"vocab size {v} does not fit in uint32 token files")
        return v


class TokenizerCompareConfig(StageConfig):
    """Options of `tokenizer compare`."""

    split: str = "val"
    """Corpus split to measure on."""
    max_docs: int = Field(1000, ge=1)
    """Documents to measure on (the first N of the split)."""
    top: int = Field(15, ge=0)
    """Most frequent split words listed per tokenizer."""


class PrepareConfig(ShardOptions):
    """Options of `data prepare` (the corpus and the tokenizer decide the tokens; `--shard` and
    `--merge` split the encoding over tasks)."""


class GPT2Overrides(StageConfig):
    """The fields of a preset's GPT-2 that `--model FIELD=VALUE` may override (GPT2Config's)."""

    n_layer: int | None = Field(None, ge=1)
    """Transformer blocks."""
    n_embd: int | None = Field(None, ge=1)
    """Width of the residual stream (a multiple of n_head)."""
    n_head: int | None = Field(None, ge=1)
    """Attention heads per block."""
    n_positions: int | None = Field(None, ge=2)
    """Positions the model has: the longest context."""
    n_inner: int | None = Field(None, ge=1)
    """Width of the MLP (default 4 x n_embd)."""
    activation_function: str | None = None
    """The MLP's activation (a transformers name: gelu (the presets', exact), gelu_new (GPT-2's
    tanh approximation), gelu_pytorch_tanh, relu, ...)."""
    resid_pdrop: float | None = Field(None, ge=0, lt=1)
    """Dropout on the residual branches (0 in the presets)."""
    embd_pdrop: float | None = Field(None, ge=0, lt=1)
    """Dropout on the embeddings (0 in the presets)."""
    attn_pdrop: float | None = Field(None, ge=0, lt=1)
    """Dropout on the attention weights (0 in the presets)."""
    layer_norm_epsilon: float | None = Field(None, gt=0)
    """Layer norm's epsilon."""
    initializer_range: float | None = Field(None, gt=0)
    """Standard deviation of the initial weights."""
    tie_word_embeddings: bool | None = None
    """Share the input embedding and the output projection (GPT-2 does)."""

    @field_validator("activation_function")
    @classmethod
    def _known_activation(cls, v: str | None) -> str | None:
        if v is not None:
            from transformers.activations import ACT2FN

            if v not in ACT2FN:
                raise ValueError(f"unknown activation '{v}' (e.g. gelu_pytorch_tanh, gelu_new, relu)")
        return v

    @model_serializer(mode="wrap")
    def _given_only(self, handler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class ModelConfig(StageConfig):
    """A GPT-2 model from a preset: the options of an untrained model (an experiment's untrained
    variant), and the model part of `train`'s options."""

    preset: str = "gpt2-mini"
    """Model preset (gpt2-tiny, gpt2-mini, gpt2-small, gpt2-medium, gpt2-large) for --init scratch."""
    model: GPT2Overrides = Field(default_factory=GPT2Overrides)
    """Overrides of preset fields, FIELD=VALUE, e.g. n_layer=4 (on the command line repeatable)."""
    seed: int = 0
    """Seed of the initial weights (and, in training, of the data order)."""

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, v: str) -> str:
        from expertlm.models import PRESETS

        if v not in PRESETS:
            raise ValueError(f"unknown preset '{v}' (presets: {', '.join(PRESETS)})")
        return v

    @field_validator("model")
    @classmethod
    def _heads_divide_the_width(cls, v: GPT2Overrides, info: ValidationInfo) -> GPT2Overrides:
        from expertlm.models import PRESETS

        shape = PRESETS.get(info.data.get("preset", ""), {}) | v.model_dump()
        if "n_embd" in shape and "n_head" in shape and shape["n_embd"] % shape["n_head"]:
            raise ValueError(f"n_embd {shape['n_embd']} is not divisible by n_head {shape['n_head']}")
        return v

    def fields(self) -> dict[str, Any]:
        """The model's GPT2Config fields: the preset's, overridden."""
        from expertlm.models import PRESETS

        return PRESETS[self.preset] | self.model.model_dump()


class LoraOptions(StageConfig):
    """LoRA adapters for `train --lora` (Hu et al. 2021, via `peft`): the base model is frozen
    and only low-rank updates B A (scaled by alpha / r) of the target layers are trained."""

    r: int = Field(8, ge=1)
    """Rank of each adapter."""
    alpha: float = Field(16.0, gt=0)
    """Scale numerator: an adapter adds (alpha / r) B A x to its layer's output."""
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """Dropout on the adapters' input (0, as the presets' pretraining dropout)."""
    targets: list[str] | None = None
    """Module names to adapt (default: the architecture's attention and MLP projections, e.g.
    c_attn, c_proj, c_fc for GPT-2; q_proj ... down_proj for Llama/Mistral/Qwen)."""

    @model_validator(mode="before")
    @classmethod
    def _from_spec(cls, v: Any) -> Any:
        """`r=8,alpha=32,dropout=0.1,targets=c_attn,c_proj` (the CLI's form) -> a dict: a
        comma-separated item without `=` continues the list of the key before it."""
        if not isinstance(v, str):
            return v
        out: dict[str, Any] = {}
        key = None
        for item in (i.strip() for i in v.split(",")):
            if not item:
                continue
            name, sep, value = item.partition("=")
            if sep:
                key = name.strip()
                out[key] = [value.strip()] if key == "targets" else value.strip()
            elif key == "targets":
                out[key].append(item)
            else:
                raise ValueError(
                    f"expected KEY=VALUE items (r, alpha, dropout, targets), got {item!r}"
                )
        return out


class TrainConfig(ModelConfig):
    """Options of `train` (the model's preset, overrides and seed are `ModelConfig`'s)."""

    objective: Literal["clm", "sft", "dpo", "orpo"] = "clm"
    """What is learnt: clm (causal language modelling on a shards folder: pretraining or
    continued pretraining), or, on a JSONL file and from an --init model whose tokenizer renders
    it, sft (supervised fine-tuning), dpo (direct preference optimisation against the frozen
    --init model) or orpo (odds-ratio preference optimisation). Formats: docs/adaptation.md."""
    init: str = "scratch"
    """`scratch` (random, seeded) or a model folder / hub id to continue pretraining."""
    context: int | None = Field(None, ge=2)
    """Tokens per training window (default: the model's maximum)."""
    micro_batch: int = Field(8, ge=1)
    """Windows per forward pass on each process."""
    batch_tokens: int | None = Field(None, ge=1)
    """Global batch in tokens, summed over processes; reached by gradient accumulation
    (default: one micro batch per process). clm only."""
    batch_examples: int | None = Field(None, ge=1)
    """sft, dpo, orpo: global batch in examples (pairs), summed over processes; reached by
    gradient accumulation (default: one micro batch per process)."""
    max_steps: int | None = Field(None, ge=1)
    """Optimizer steps to run (one of max_steps, max_tokens, epochs; default 1 epoch)."""
    max_tokens: int | None = Field(None, ge=1)
    """Tokens to train on, summed over processes."""
    epochs: float | None = Field(None, gt=0)
    """Passes over the training windows."""
    max_time_s: float | None = Field(None, gt=0)
    """Stop (with a final checkpoint) after this many seconds."""
    lr: float | None = Field(None, gt=0)
    """Peak learning rate (default 6e-4 from scratch, 1e-4 for continued pretraining)."""
    lr_min_ratio: float = Field(0.1, ge=0, le=1)
    """The decay's floor as a fraction of the peak."""
    warmup_steps: int | None = Field(None, ge=0)
    """Linear warm-up steps (default: 5% of the run, at most 1000)."""
    schedule: Literal["cosine", "linear"] = "cosine"
    """Decay after warm-up."""
    weight_decay: float = Field(0.1, ge=0)
    """AdamW weight decay, applied to matrices only (not biases, norms)."""
    beta1: float = Field(0.9, ge=0, lt=1)
    """AdamW's first-moment decay."""
    beta2: float = Field(0.95, ge=0, lt=1)
    """AdamW's second-moment decay."""
    grad_clip: float = Field(1.0, ge=0)
    """Clip the global gradient norm to this (0: no clipping)."""
    bf16: bool | Literal["auto"] = False
    """bf16 autocast (CPU and GPU); weights and optimizer stay fp32. auto: where the device has
    bf16 in hardware (a GPU from Ampere on; a CPU with AVX-512 BF16 or AMX), fp32 elsewhere; run.json
    records which."""
    compile: bool = False
    """torch.compile the model (in bf16, with a GPT-2's head and loss in the same graph)."""

    @field_validator("bf16", mode="before")
    @classmethod
    def _bf16_words(cls, v: Any) -> Any:
        """One message for a bad value (not one per member of the union)."""
        words = {"true": True, "yes": True, "on": True, "1": True,
                 "false": False, "no": False, "off": False, "0": False}  # fmt: skip
        if isinstance(v, bool) or v == "auto":
            return v
        if isinstance(v, str) and v.lower() in words:
            return words[v.lower()]
        if isinstance(v, int) and v in (0, 1):
            return bool(v)
        raise ValueError(f"expected true, false or auto, not {v!r}")
    fsdp: bool = False
    """Shard parameters, gradients and optimizer state over processes (FSDP2) instead of DDP."""
    val_every_steps: int = Field(100, ge=1)
    """Validation loss every N steps (and at the end)."""
    val_windows: int = Field(64, ge=1)
    """Fixed validation windows (the first N of val.bin), the same for every evaluation."""
    val_frac: float = Field(0.05, ge=0.0, lt=1.0)
    """sft, dpo, orpo: fraction of the JSONL's examples held out for validation (a seeded
    choice, at least one where there are two or more examples; 0: none)."""
    loss_on: Literal["assistant", "all"] = "assistant"
    """sft: train on the assistant turns (the completion) only, or on every token; orpo: the
    same for its NLL term."""
    beta: float | None = Field(None, gt=0)
    """dpo: the strength of the reference constraint (default 0.1)."""
    orpo_lambda: float | None = Field(None, ge=0)
    """orpo: the weight of the odds-ratio term (default 0.1)."""
    log_every_steps: int = Field(10, ge=1)
    """Write a metrics.jsonl row every N steps."""
    ckpt_every_steps: int = Field(500, ge=1)
    """Checkpoint every N steps (and at the end)."""
    keep_last: int = Field(2, ge=1)
    """Checkpoints kept (the best by validation loss is kept apart, in best/)."""
    peak_tflops: float | None = Field(None, gt=0)
    """Peak TFLOP/s of one device, for the MFU estimate."""
    device: str | None = None
    """cpu, cuda, cuda:1 ... (default: cuda when available)."""
    lora: LoraOptions | None = None
    """Train LoRA adapters on the frozen `init` model instead of all weights: a dict of
    `LoraOptions` or their string `r=8,alpha=16,dropout=0,targets=c_attn,c_proj` (any subset;
    `true` for the defaults). Checkpoints and the run folder then hold the adapters only."""

    _device = field_validator("device")(_device_name)

    def batch_problems(self, max_context: int, world: int = 1) -> list[tuple[str, str]]:
        """(option, problem) pairs of the batch arithmetic for a model of `max_context`
        positions trained by `world` processes (train checks them, and `run` before compute)."""
        context = self.context or max_context
        problems = []
        if context > max_context:
            problems.append(("context", f"{context} exceeds the model's maximum ({max_context})"))
        per_step = self.micro_batch * world * min(context, max_context)
        if self.batch_tokens is not None and self.batch_tokens % per_step:
            problems.append(("batch_tokens", f"{self.batch_tokens} is not a multiple of micro_batch x "
                             f"processes x context ({self.micro_batch} x {world} x {context} = {per_step})"))  # fmt: skip
        return problems

    @field_validator("lora", mode="before")
    @classmethod
    def _lora_on(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().lower() in ("true", "yes", "on", "default"):
            return {}
        return {} if v is True else None if v is False else v

    @model_validator(mode="after")
    def _objective_options(self) -> TrainConfig:
        post = self.objective != "clm"
        if post and self.init == "scratch":
            raise ValueError(f"--objective {self.objective} needs --init (the model folder to "
                             "fine-tune; its tokenizer renders the JSONL data)")  # fmt: skip
        used = {"batch_tokens": not post, "max_tokens": not post, "batch_examples": post,
                "beta": self.objective == "dpo", "orpo_lambda": self.objective == "orpo"}  # fmt: skip
        unused = [flag(k) for k, ok in used.items() if getattr(self, k) is not None and not ok]
        if unused:
            raise ValueError(f"{', '.join(unused)} not used by --objective {self.objective}")
        return self

    @model_validator(mode="after")
    def _lora_needs_a_pretrained_model(self) -> TrainConfig:
        if self.lora is not None and self.init == "scratch":
            raise ValueError(
                "--lora needs --init (a pretrained model folder or hub id): LoRA freezes the "
                "base weights, and a frozen random model cannot be taught by low-rank updates "
                "(train from scratch without --lora)"
            )
        return self


class MergeConfig(StageConfig):
    """Options of `merge`."""

    method: Literal["linear", "slerp", "ties", "task_arithmetic"] = "linear"
    """linear (weighted average), slerp (two models), ties or task_arithmetic (relative to --base)."""
    weights: list[float] | None = None
    """One weight per model, e.g. 0.7,0.3. linear: normalised to sum to 1 (default equal); ties
    and task_arithmetic: each task vector's weight, not normalised (default 1 each)."""
    t: float | None = Field(None, ge=0.0, le=1.0)
    """slerp: 0 gives the first model, 1 the second (default 0.5)."""
    density: float | None = Field(None, gt=0.0, le=1.0)
    """ties: fraction of each task vector's entries kept, by magnitude, per tensor (default 0.2)."""
    lam: float | None = None
    """ties, task_arithmetic: scale of the merged task vector added to the base (default 1)."""

    @model_validator(mode="after")
    def _used_by_the_method(self) -> MergeConfig:
        uses = {"linear": {"weights"}, "slerp": {"t"}, "ties": {"weights", "density", "lam"},
                "task_arithmetic": {"weights", "lam"}}[self.method]  # fmt: skip
        unused = [flag(k) for k in ("weights", "t", "density", "lam")
                  if getattr(self, k) is not None and k not in uses]  # fmt: skip
        if unused:
            raise ValueError(f"{', '.join(unused)} not used by --method {self.method}")
        return self

    def parameters(self, n_models: int) -> dict[str, Any]:
        """The resolved parameters (defaults filled in), as merge.json records them."""
        if self.method == "slerp":
            return {"t": 0.5 if self.t is None else self.t}
        p: dict[str, Any] = {"weights": self.weights or [1.0] * n_models}
        if self.method == "linear":
            total = sum(p["weights"])
            p["weights"] = [w / total for w in p["weights"]]
        if self.method == "ties":
            p["density"] = 0.2 if self.density is None else self.density
        if self.method in ("ties", "task_arithmetic"):
            p["lam"] = 1.0 if self.lam is None else self.lam
        return p


class MergeRecipeConfig(StageConfig):
    """Options of an experiment's recipe merge (`merge: {recipe: ...}`)."""

    recipe: dict[str, Any]
    """A mergekit recipe (`merge --config`'s YAML as a mapping) naming the models' folders."""


class ExportConfig(StageConfig):
    """Options of `export`."""

    merge_lora: bool = False
    """Merge a LoRA run's adapters into its base model (W + (alpha / r) B A)."""


class ScoringOptions(StageConfig):
    """How a model is run to score texts (shared by `eval bench` and `eval ppl`)."""

    batch_size: int | None = Field(None, ge=1)
    """Sequences per forward pass (default: 1 on the CPU, ~16k tokens per pass on a GPU)."""
    stride: int | None = Field(None, ge=1)
    """Sliding-window stride for texts longer than the context (default: half the context)."""
    padding_side: Literal["right", "left"] = "right"
    """Where batches are padded (results do not depend on it)."""
    device: str | None = None
    """cpu, cuda, cuda:1 ... (default: cuda when available)."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weights' dtype (auto: float32 on the CPU, the checkpoint's own on a GPU); log-probabilities
    are float32 whatever this is."""

    _device = field_validator("device")(_device_name)


class PromptOptions(StageConfig):
    """How a benchmark's items become scored text (shared by `eval bench` and `bench export`)."""

    template: str = "none"
    """Prompt template: a name (none, neuro) or any string with one {abstract} (an exam's
    question goes in its place)."""
    repair: bool = False
    """Re-derive both versions from the [[original, altered]] markers where unambiguous; drop
    rows whose markers are malformed or ambiguous."""
    reduction: Literal["mean", "sum"] = "mean"
    """Mean NLL per predicted token (the published rule) or summed NLL."""
    score_template: bool = True
    """Score the template's tokens too (as published) or only the abstract's."""
    bos: bool | None = None
    """Prepend a BOS token (True), never (False), or as the tokenizer does by default (None)."""
    target_delimiter: str = " "
    """Exams: the text between the question and a choice (lm-eval's target_delimiter)."""


def _checkpoints_spec(v: str | None) -> str | None:
    if v is None or v == "all":
        return v
    m = re.fullmatch(r"every:(\d+)", v.strip())
    if not m or int(m.group(1)) < 1:
        raise ValueError(f"{v!r}: expected all or every:N (N >= 1 steps), e.g. every:500")
    return v.strip()


class CheckpointOptions(StageConfig):
    """`--checkpoints` (shared by `eval bench` and `eval ppl`): score every checkpoint of a run."""

    checkpoints: str | None = None
    """all or every:N: MODEL is a train run folder; score its init (step 0), its checkpoints
    (every:N: those whose step is a multiple of N) and its final model, into OUT/step-N/ each,
    with one table OUT/checkpoints.csv and .json (step, tokens, FLOPs from the run's own
    run.json and metrics.jsonl, and the scores; docs/specialization.md)."""

    _checkpoints = field_validator("checkpoints")(_checkpoints_spec)


class EvalBenchConfig(ScoringOptions, PromptOptions, CheckpointOptions):
    """Options of `eval bench`."""

    isolated: bool = False
    """Also score each sentence that carries a change as its own item (isolated sentences)."""
    share_prefix: bool = True
    """Run the two versions' shared prefix once (same numbers, less compute)."""
    bins: int = Field(10, ge=1)
    """Calibration bins (equal-count, by confidence rank)."""
    seed: int = 0
    """Seed of the bootstrap and of the calibration regression's folds."""


class BenchMakeConfig(StageConfig):
    """Options of `bench make`."""

    after: int | None = None
    """The training cutoff (required): items come from documents published after this year
    (with --pairs, pairs from documents published in it or before)."""
    pairs: bool = False
    """Write the alterations as preference pairs (pairs.jsonl: prompt, chosen, rejected, TRL's
    format) from the documents up to the cutoff, instead of a benchmark."""
    equal_tokens: bool = False
    """Keep only items whose two versions have as many tokens under every --tokenizer (a
    reversed word takes the first partner that keeps the count)."""
    text_field: str | None = None
    """Field holding the abstract (default: abstract where a document has one, else text)."""
    id_field: str = "id"
    """Field with the document's id (the benchmark's doi column; a doi field is preferred)."""
    year_field: str = "year"
    """Field with the publication year."""
    section_field: str | None = None
    """Field giving the journal_section column (default: the first of journal_section, section,
    field, subjects that a document has)."""
    drop_title: bool = True
    """Leave out a first paragraph that is a one-line title (text = title, blank line, abstract)."""
    min_sentences: int = Field(4, ge=2)
    """Abstracts with fewer sentences are left out (too_short)."""
    max_places: int = Field(5, ge=1)
    """Most places one finding may be reversed in (more: left out, too_many_places)."""
    decontam_ngram: int = Field(13, ge=1)
    """Length in words of the n-grams shared with a --decontam corpus that leave an item out."""
    max_items: int | None = Field(None, ge=1)
    """Stop after this many items."""
    llm_max_new_tokens: int = Field(384, ge=16)
    """--llm: the most tokens the model may answer with."""

    @model_validator(mode="after")
    def _cutoff(self) -> BenchMakeConfig:
        if self.after is None:
            raise ValueError("--after YEAR is required: the training cutoff (items come from later papers)")
        return self


class BenchExportConfig(PromptOptions):
    """Options of `bench export`."""

    format: Literal["lm-eval"] = "lm-eval"
    """The harness to export to: lm-eval (an lm-evaluation-harness task folder)."""
    name: str | None = None
    """The task's name (default: from the benchmark's file name)."""

    @field_validator("name")
    @classmethod
    def _task_name(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", v):
            raise ValueError(f"'{v}': a task name is letters, digits and '_', starting with a letter")
        return v


class EvalPplConfig(ScoringOptions, CheckpointOptions):
    """Options of `eval ppl`."""

    split: str = "val"
    """Corpus split to score."""
    max_docs: int | None = Field(None, ge=1)
    """Score the first N documents only."""


class EvalHumansConfig(StageConfig):
    """Options of `eval humans`."""

    items: Literal["human", "machine", "all"] = "human"
    """Trials on items written by humans (the published headline), by a machine, or all."""
    top_pct: float = Field(0.2, gt=0, le=1)
    """Share of each abstract's trials, by self-rated expertise, in the top-expertise accuracy."""
    bins: int = Field(20, ge=1)
    """Calibration bins (the published human calibration uses 20)."""
    seed: int = 0
    """Seed of the bootstrap and of the calibration regression's folds."""


class EvalCompareConfig(StageConfig):
    """Options of `eval compare`."""

    seed: int = 0
    """Seed of the paired bootstrap."""
    metric: Literal["correct", "acc", "acc_norm", "acc_bytes"] = "correct"
    """The items.csv column compared: correct (the perplexity rule), or an exam's lm-eval
    accuracy (acc, acc_norm, acc_bytes)."""


class JobsOptions(StageConfig):
    """`--jobs`, taken by `run` and `demo`."""

    jobs: int = Field(1, ge=0)
    """Stages run at once, each in its own process, as soon as their inputs are ready (0: one
    per core on a machine without a GPU, up to the trainings that can run side by side; 1 with a
    GPU); the cores are shared out among them. Numbers can differ in the last digits between
    values (a model trained on fewer threads rounds differently), so an accuracy can move by an
    item or two."""


class RunConfig(JobsOptions):
    """Options of `run`."""

    profile: str | None = None
    """A named profile of overrides in the experiment file (e.g. quick)."""
    dry_run: bool = False
    """Validate and print the plan with each training's token and FLOP budget; compute nothing."""
    report: bool = True
    """Write the report after the stages."""


class ReportConfig(StageConfig):
    """Options of `report` (none: it reads the experiment's experiment.json)."""


class DemoConfig(JobsOptions):
    """Options of `demo`."""

    jobs: int = Field(0, ge=0)
    """As `run`'s --jobs, whose 0 is the demo's default: on 2 cores, two stages at once with a
    core each (1.2x the tokens/s of one training on both)."""

    quick: bool = False
    """A tiny version of the same flow (about 20 seconds; for tests, numbers not meaningful)."""


def _power_of_two(v: int) -> int:
    if v & (v - 1):
        raise ValueError(f"{v} is not a power of two (e.g. 1048576 = 2**20)")
    return v


class ClassifierConfig(StageConfig):
    """Options of `classifier train`."""

    text_field: str = "text"
    """JSON field or CSV/TSV/Parquet column of source files that holds the document text."""
    id_field: str = "id"
    """Field/column with the document id (it decides the held-out split); a document without
    one gets the hash of its text."""
    field: str | None = None
    """With --values FILE: the documents whose value of this field (e.g. journal) is in FILE
    are the positives, the others the negatives (a list value matches if any element does)."""
    min_keyword_hits: int = Field(1, ge=1)
    """With --keywords FILE: a document with at least this many keyword occurrences is a
    positive, any other a negative."""
    n_features: int = Field(2**20, ge=2**10, le=2**26)
    """Columns the hashed word n-grams are folded into (a power of two)."""
    ngram_max: int = Field(2, ge=1, le=5)
    """Longest word n-gram (2: unigrams and bigrams)."""
    max_chars: int | None = Field(None, ge=1)
    """Read only the first this many characters of each document (saved with the classifier,
    so `corpus filter` does the same): when the positives are abstracts and the corpus to
    filter is full texts, 1000 compares a text's title and abstract with them."""
    epochs: int = Field(5, ge=1)
    """Passes of stochastic gradient descent over the training documents."""
    batch_docs: int = Field(256, ge=1)
    """Documents per `partial_fit` step."""
    alpha: float = Field(1e-6, gt=0)
    """L2 regularisation strength of the logistic regression."""
    holdout_frac: float = Field(0.1, gt=0.0, lt=1.0)
    """Fraction of documents held out for the scores in classifier.json (by a hash of the id)."""
    seed: int = 0
    """Seed of the held-out split and of the order of the training documents."""
    skip_bad: bool = False
    """Count and skip malformed records instead of stopping at the first."""

    _n_features = field_validator("n_features")(_power_of_two)


class FilterConfig(ShardOptions):
    """Options of `corpus filter`."""

    threshold: float | None = Field(None, ge=0.0, le=1.0)
    """Keep what the classifier scores at or above this probability (default: the
    classifier's default threshold, 0.5)."""
    keep_frac: float | None = Field(None, gt=0.0, le=1.0)
    """Keep this fraction of the units with the highest scores instead of a threshold."""
    unit: Literal["document", "paragraph"] = "document"
    """What is scored and kept: whole documents, or paragraphs (blank-line separated; a
    document keeps its paragraphs at or above the threshold and is dropped if none is)."""
    text_field: str = "text"
    """JSON field or CSV/TSV/Parquet column of source files that holds the document text."""
    id_field: str = "id"
    """Field/column with the document id; a document without one gets the hash of its text."""
    year_field: str = "year"
    """Field/column with the publication year."""
    keep_fields: list[str] = Field(default_factory=list)
    """Other fields of source files copied into each document (a corpus folder's documents
    keep all their fields)."""
    val_frac: float = Field(0.01, ge=0.0, lt=1.0)
    """Fraction of documents in the validation split (chosen by a hash of the id)."""
    split_seed: int = 0
    """Seed of the hash-based split."""
    workers: int | None = Field(None, ge=1)
    """Worker processes that score (default: one per core, or none for inputs under 8 MB);
    the output is the same for any number."""
    skip_bad: bool = False
    """Count and skip malformed records instead of stopping at the first."""

    _not_reserved = field_validator("keep_fields")(CorpusConfig._not_reserved.__func__)

    @model_validator(mode="after")
    def _one_rule(self) -> FilterConfig:
        if self.threshold is not None and self.keep_frac is not None:
            raise ValueError("--threshold and --keep-frac: give one of them, not both")
        if self.keep_frac is not None and (self.shard is not None or self.merge is not None):
            raise ValueError("--keep-frac needs every document's score at once: with --shard or "
                             "--merge give --threshold instead")
        return self
