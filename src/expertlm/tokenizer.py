"""Tokenizers: train a GPT-2-style byte-level BPE on a corpus, load one, compare several.

A tokenizer folder is what `transformers.AutoTokenizer.from_pretrained` loads
(`tokenizer.json` + `tokenizer_config.json`) plus `expertlm_tokenizer.json` (provenance).
Byte-level BPE with no normaliser round-trips any text exactly.
"""

from __future__ import annotations

import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from expertlm.config import TokenizerCompareConfig, TokenizerConfig
from expertlm.console import count_progress, info, progress_enabled, warn
from expertlm.corpus.docs import corpus_hash, iter_texts, read_manifest, split_file
from expertlm.encode import plain_encode
from expertlm.errors import ExpertlmError
from expertlm.io import (
    atomic_dir,
    check_output,
    check_output_dir,
    provenance,
    read_json,
    sha256_file,
    sha256_text,
    write_json,
)
from expertlm.net import require_hub

EOT = "<|endoftext|>"
INFO_FILE = "expertlm_tokenizer.json"


# --- train -----------------------------------------------------------------------------------


def tokenizer_train(
    corpus: str | Path,
    out: str | Path,
    *,
    overwrite: bool = False,
    show_progress: bool = True,
    **options,
) -> Path:
    """Train a byte-level BPE tokenizer (GPT-2 pre-tokenisation, `<|endoftext|>`) on the
    corpus's train split. `options` are the fields of `TokenizerConfig` (vocab_size,
    min_frequency, max_docs)."""
    t0 = time.time()
    cfg = TokenizerConfig.from_options(options, source="option")
    out = Path(out)
    check_output_dir(out, overwrite, inputs=[corpus])
    train_file = split_file(corpus, "train")
    # Imported after the options are checked: a bad option fails at once, not after ~1 s.
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())  # no unknown token: every byte is in the alphabet
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(
        add_prefix_space=False, use_regex=True
    )  # GPT-2's regex
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=progress_enabled(show_progress),
    )
    try:
        total = read_manifest(corpus)["split"]["train"]["docs"]
    except (ExpertlmError, KeyError, TypeError):
        total = None
    if cfg.max_docs is not None:
        total = min(total or cfg.max_docs, cfg.max_docs)
    seen = Counter()

    def texts():
        with count_progress(show_progress) as bar:
            task = bar.add_task("reading corpus", total=total)
            for text in islice(iter_texts(train_file), cfg.max_docs):
                seen["docs"] += 1
                seen["chars"] += len(text)
                bar.advance(task)
                yield text

    tok.train_from_iterator(texts(), trainer=trainer, length=total)
    if seen["docs"] == 0:
        raise ExpertlmError(f"{train_file}: no documents to train a tokenizer on")
    vocab = tok.get_vocab_size()
    if vocab < cfg.vocab_size:
        warn(
            f"the corpus supports only {vocab:,} tokens (asked for {cfg.vocab_size:,}): "
            f"{seen['chars']:,} characters are too few for more merges at min_frequency {cfg.min_frequency}"
        )

    with atomic_dir(out, overwrite) as tmp:
        hf = PreTrainedTokenizerFast(
            tokenizer_object=tok,
            bos_token=EOT,
            eos_token=EOT,
            unk_token=EOT,
            clean_up_tokenization_spaces=False,  # exact round trip
        )
        hf.save_pretrained(tmp)
        write_json(
            tmp / INFO_FILE,
            {
                "format": "expertlm.tokenizer/1",
                "corpus": str(corpus),
                "corpus_hash": corpus_hash(corpus),
                "config": cfg.model_dump(mode="json"),
                "vocab_size": vocab,
                "vocab_size_requested": cfg.vocab_size,
                "trained_on": dict(seen),
                "tokenizer_hash": sha256_file(tmp / "tokenizer.json"),
                "wall_s": round(time.time() - t0, 3),
                **provenance(),
            },
        )
    info(f"tokenizer: {vocab:,} tokens from {seen['docs']:,} documents -> {out}")
    return out


# --- files ---------------------------------------------------------------------------------------

# What a tokenizer folder may hold (a model folder's tokenizer part).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "tokenizer.model",
    "chat_template.jinja",
)


def copy_tokenizer_files(src: str | Path, dest: str | Path) -> None:
    """Copy the tokenizer files of the folder `src` (those it has) into the folder `dest`."""
    src, dest = Path(src), Path(dest)
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dest / name)


# --- load ------------------------------------------------------------------------------------


@dataclass
class TokenizerHandle:
    """The fast (Rust) tokenizer behind a folder or hub id, with what the stages need."""

    name: str
    backend: object  # tokenizers.Tokenizer
    eot_id: int
    vocab_size: int  # largest id + 1, i.e. the embedding rows a model needs
    hash: str

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return plain_encode(self.backend, texts)


def load_tokenizer(name: str | Path):
    """A `transformers` tokenizer from a local folder, or a hub id where the network is there."""
    from transformers import AutoTokenizer

    path = Path(name)
    if path.exists():
        if not path.is_dir():
            raise ExpertlmError(f"{path}: a tokenizer is a folder, not a file")
        if not any((path / f).is_file() for f in TOKENIZER_FILES):
            raise ExpertlmError(
                f"{path}: not a tokenizer folder: no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, "
                f"...); copy the files of the tokenizer the model was trained with into it"
            )
        try:
            return AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as e:
            raise ExpertlmError(
                f"{path}: not a tokenizer folder ({str(e).splitlines()[0]})"
            ) from None
    require_hub(str(name), "tokenizer")
    try:
        return AutoTokenizer.from_pretrained(str(name))
    except Exception as e:  # offline, unknown id, gated: all mean "cannot load it here"
        raise ExpertlmError(
            f"{name}: no such local folder, and loading it from the hub failed ({type(e).__name__})"
        ) from None


def load_handle(name: str | Path) -> TokenizerHandle:
    path = Path(name)
    if (path / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        try:
            backend = Tokenizer.from_file(str(path / "tokenizer.json"))
        except Exception as e:
            raise ExpertlmError(
                f"{path / 'tokenizer.json'}: not a valid tokenizer file ({e})"
            ) from None
        digest = sha256_file(path / "tokenizer.json")
        eos = None
        if (path / "tokenizer_config.json").is_file():
            eos = read_json(path / "tokenizer_config.json").get("eos_token")
            eos = eos.get("content") if isinstance(eos, dict) else eos
    else:
        hf = load_tokenizer(name)
        backend = getattr(hf, "backend_tokenizer", None)
        if backend is None:
            raise ExpertlmError(
                f"{name}: has no fast (Rust) tokenizer; expertlm needs tokenizer.json"
            )
        digest = sha256_text(backend.to_str())
        eos = hf.eos_token
    eot_id = backend.token_to_id(EOT)
    if eot_id is None and eos:
        eot_id = backend.token_to_id(eos)
    if eot_id is None:
        raise ExpertlmError(f"{name}: tokenizer has no end-of-text token ({EOT} or an eos_token)")
    # A literal "<|endoftext|>" inside a document is text, not a document boundary: encode it
    # as ordinary bytes so the only eot ids in the shards are the ones data prepare puts there.
    backend.encode_special_tokens = True
    vocab_size = max(backend.get_vocab(with_added_tokens=True).values()) + 1
    return TokenizerHandle(str(name), backend, eot_id, vocab_size, digest)


# --- compare ---------------------------------------------------------------------------------

_ALPHA_WORD = re.compile(r"[^\W\d_]+(?:[-'][^\W\d_]+)*")
DEFINITIONS = {
    "fertility": "tokens per whitespace-separated word, over whole documents",
    "chars_per_token": "characters per token, over whole documents",
    "whole_word_share": "share of alphabetic word occurrences encoded (with their leading space) as one token",
    "split_words": "most frequent alphabetic words (>= 4 letters) that the tokenizer splits, with their pieces",
}


def tokenizer_compare(tokenizers: list[str | Path], *, on: str | Path, out: str | Path | None = None,
                      show_progress: bool = True, **options) -> dict:  # fmt: skip
    """Compare tokenizers on a corpus sample: fertility, characters per token, share of words
    kept whole, and the most frequent words each one splits. `options` are the fields of
    `TokenizerCompareConfig` (split, max_docs, top). Writes JSON to `out` if given."""
    cfg = TokenizerCompareConfig.from_options(options)
    split, max_docs, top = cfg.split, cfg.max_docs, cfg.top
    if len(tokenizers) < 2:
        raise ExpertlmError("compare needs at least two tokenizers")
    handles = [load_handle(t) for t in tokenizers]
    texts = list(islice(iter_texts(on, split), max_docs))
    if not texts and split == "val":
        warn(f"{on}: the validation split is empty; comparing on the train split")
        split, texts = "train", list(islice(iter_texts(on, "train"), max_docs))
    if not texts:
        raise ExpertlmError(f"{on}: no documents in the {split} split")

    n_chars = sum(len(t) for t in texts)
    n_ws_words = sum(len(t.split()) for t in texts)
    freq = Counter(w for t in texts for w in _ALPHA_WORD.findall(t))
    vocab = sorted(freq)
    rows = []
    for h in handles:
        n_tokens = sum(len(ids) for ids in h.encode_batch(texts))
        pieces = dict(zip(vocab, h.encode_batch([" " + w for w in vocab]), strict=False))
        whole = sum(c for w, c in freq.items() if len(pieces[w]) == 1)
        split_words = [
            {"word": w, "count": c, "pieces": [h.backend.decode([i]) for i in pieces[w]]}
            for w, c in freq.most_common()
            if len(w) >= 4 and len(pieces[w]) > 1
        ][:top]
        rows.append(
            {
                "tokenizer": h.name,
                "vocab_size": h.vocab_size,
                "tokens": n_tokens,
                "fertility": n_tokens / max(n_ws_words, 1),
                "chars_per_token": n_chars / max(n_tokens, 1),
                "whole_word_share": whole / max(sum(freq.values()), 1),
                "split_words": split_words,
            }
        )
    result = {
        "corpus": str(on),
        "split": split,
        "docs": len(texts),
        "chars": n_chars,
        "words": n_ws_words,
        "definitions": DEFINITIONS,
        "tokenizers": rows,
    }
    if out is not None:
        check_output(out, [*tokenizers, on])
        write_json(out, result)
    return result


def print_comparison(result: dict) -> None:
    """`tokenizer compare`'s tables on stdout: one row per tokenizer, then each one's most
    frequent split words with their pieces."""
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
