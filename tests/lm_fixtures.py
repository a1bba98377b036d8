"""Tiny language models for the scoring and evaluation tests, built here, never downloaded.

`bigram_model` is a GPT-2 whose next-token distribution is a given table P[previous, next]:
its one transformer block adds nothing (output projections zero), position embeddings are zero,
token embeddings are one-hot, and the output matrix is built so that the final layer norm turns
a one-hot row x into exactly the logits log P[x]. Expected NLLs are then computed from P alone.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import torch

TEXTS = [
    "Knockout of the receptor increased firing in cortical neurons and impaired memory in mice.",
    "Dopamine release decreased after stimulation, while serotonin enhanced synaptic plasticity.",
    "Lesions of the hippocampus reduced fear learning; the amygdala showed higher activity.",
    "You are a neuroscientist with deep knowledge in neuroscience. Here is an abstract.",
]


def write_corpus(folder: Path, train: list[str], val: list[str]) -> Path:
    """A corpus folder (train.jsonl.gz, val.jsonl.gz) of the given texts."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, texts in (("train", train), ("val", val)):
        lines = "".join(
            json.dumps({"id": f"{split}{i}", "text": t}) + "\n" for i, t in enumerate(texts)
        )
        (folder / f"{split}.jsonl.gz").write_bytes(gzip.compress(lines.encode(), mtime=0))
    return folder


def make_tokenizer(folder: Path, vocab_size: int = 300) -> Path:
    """A byte-level BPE tokenizer folder (expertlm's own trainer) on a few sentences."""
    from expertlm.tokenizer import tokenizer_train

    texts = [t * 3 for t in TEXTS * 20]
    corpus = write_corpus(folder.parent / f"{folder.name}-corpus", texts, texts)
    return tokenizer_train(
        corpus, folder, vocab_size=vocab_size, min_frequency=1, show_progress=False
    )


def bigram_table(vocab: int, seed: int = 0) -> np.ndarray:
    """A random next-token distribution P[previous, next] (rows sum to 1), float64."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.0, size=(vocab, vocab))
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def bigram_model(P: np.ndarray, n_positions: int = 64):
    """A GPT2LMHeadModel computing exactly log P[previous token] as its logits."""
    from transformers import GPT2Config, GPT2LMHeadModel

    V = P.shape[0]
    d = V + 1  # one spare dimension keeps each output row's mean at zero
    cfg = GPT2Config(vocab_size=V, n_embd=d, n_layer=1, n_head=1, n_positions=n_positions,
                     tie_word_embeddings=False, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                     bos_token_id=0, eos_token_id=0)  # fmt: skip
    model = GPT2LMHeadModel(cfg).eval()
    eps = cfg.layer_norm_epsilon
    sigma = np.sqrt((1 / d) * (1 - 1 / d) + eps)  # layer norm's denominator for a one-hot row
    L = np.log(P)  # (prev, next)
    W = np.zeros((V, d))
    W[:, :V] = sigma * L.T  # row y, column x: sigma * log P[x, y]
    W[:, V] = -W[:, :V].sum(1)  # every row sums to zero, so the one-hot mean cancels
    with torch.no_grad():
        model.transformer.wte.weight.copy_(torch.eye(V, d))
        model.transformer.wpe.weight.zero_()
        for block in model.transformer.h:
            block.attn.c_proj.weight.zero_()
            block.attn.c_proj.bias.zero_()
            block.mlp.c_proj.weight.zero_()
            block.mlp.c_proj.bias.zero_()
        model.transformer.ln_f.weight.fill_(1.0)
        model.transformer.ln_f.bias.zero_()
        model.lm_head.weight.copy_(torch.tensor(W, dtype=torch.float32))
    return model


def expected_nll(P: np.ndarray, ids: list[int]) -> np.ndarray:
    """-log P[t_{j-1}, t_j] for j = 1..n-1, from the table alone."""
    return np.array([-np.log(P[a, b]) for a, b in zip(ids[:-1], ids[1:], strict=True)])


def random_gpt2(
    vocab: int, n_positions: int = 64, seed: int = 0, n_layer: int = 2, n_embd: int = 32
):
    """A randomly initialised tiny GPT-2 (real attention, so context matters)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=vocab, n_embd=n_embd, n_layer=n_layer, n_head=2,
                     n_positions=n_positions, bos_token_id=0, eos_token_id=0)  # fmt: skip
    model = GPT2LMHeadModel._from_config(cfg, attn_implementation="sdpa").eval()
    with torch.no_grad():  # sharper than the default init, so choices are rarely near-ties
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(4.0)
    return model


def save_model(model, tokenizer_dir: Path, folder: Path) -> Path:
    """A Hugging Face model folder: the model's weights plus the tokenizer's files."""
    import shutil

    model.save_pretrained(folder)
    for f in Path(tokenizer_dir).iterdir():
        if f.is_file():
            shutil.copy(f, folder / f.name)
    return folder
