"""train.py: the schedule, the data order, learning, exact resume after SIGKILL, and DDP."""

from __future__ import annotations

import gzip
import importlib
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from expertlm.config import TrainConfig
from expertlm.errors import ExpertlmError
from expertlm.objectives import CausalLM, Objective, Windows, fused_head, linear_cross_entropy
from expertlm.shards import data_prepare, open_tokens
from expertlm.tokenizer import tokenizer_train
from expertlm.train import finish, fit, lr_at, setup, train

from lm_fixtures import random_gpt2

TINY = {"preset": "gpt2-tiny", "context": 32, "micro_batch": 4, "lr": 3e-3, "show_progress": False}


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    cfg = TrainConfig(lr_min_ratio=0.1)
    assert lr_at(0, cfg, 1.0, warmup=4, total=20) == pytest.approx(0.25)
    assert lr_at(3, cfg, 1.0, warmup=4, total=20) == pytest.approx(1.0)
    assert lr_at(4, cfg, 1.0, warmup=4, total=20) == pytest.approx(1.0)
    assert lr_at(12, cfg, 1.0, warmup=4, total=20) == pytest.approx(
        0.1 + 0.45 * (1 + math.cos(math.pi / 2))
    )
    assert lr_at(20, cfg, 1.0, warmup=4, total=20) == pytest.approx(0.1)
    lin = TrainConfig(lr_min_ratio=0.0, schedule="linear")
    assert lr_at(12, lin, 1.0, warmup=4, total=20) == pytest.approx(0.5)


def test_windows_cover_every_window_once_per_epoch_in_a_seeded_order():
    tokens = np.arange(101, dtype=np.uint16)
    w = Windows(tokens, context=10, seed=3)
    assert w.count == 10
    epoch0 = w.batch(0, 10)
    assert epoch0.shape == (10, 11)
    assert sorted(int(r[0]) for r in epoch0) == list(range(0, 100, 10))
    assert torch.equal(epoch0[:, 1:], epoch0[:, :-1] + 1)  # targets are the inputs shifted by one
    assert torch.equal(Windows(tokens, 10, 3).batch(4, 3), epoch0[4:7])  # position is the state
    assert not torch.equal(w.batch(10, 10), epoch0)  # a new permutation each epoch


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """Shards of a small repetitive 'literature': learnable in a few dozen steps."""
    root = tmp_path_factory.mktemp("train")
    rng = random.Random(0)
    subjects = ["dopamine", "serotonin", "the hippocampus", "cortical neurons", "the amygdala"]
    verbs = ["increased", "decreased", "modulated", "enhanced", "impaired"]
    objects = ["memory", "firing rates", "synaptic plasticity", "fear learning", "attention"]
    docs = [
        " ".join(
            f"{rng.choice(subjects).capitalize()} {rng.choice(verbs)} {rng.choice(objects)}."
            for _ in range(12)
        )
        for _ in range(300)
    ]
    (root / "corpus").mkdir()
    for split, part in (("train", docs[:270]), ("val", docs[270:])):
        lines = "".join(
            json.dumps({"id": f"{split}{i}", "text": t}) + "\n" for i, t in enumerate(part)
        )
        (root / "corpus" / f"{split}.jsonl.gz").write_bytes(gzip.compress(lines.encode(), mtime=0))
    tok = tokenizer_train(root / "corpus", root / "tok", vocab_size=300, show_progress=False)
    return data_prepare(root / "corpus", root / "shards", tokenizer=tok, show_progress=False)


def unigram_entropy(tokens: np.ndarray) -> float:
    counts = np.array(list(Counter(tokens.tolist()).values()), dtype=np.float64)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def losses(run: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows}


def test_training_learns_below_the_unigram_entropy_and_the_run_loads(shards, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = train(
        shards, tmp_path / "run", **TINY, max_steps=80, val_every_steps=40, ckpt_every_steps=40
    )
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    final_val = [r["val_loss"] for r in rows if "val_loss" in r][-1]
    assert final_val < 0.6 * unigram_entropy(np.asarray(open_tokens(shards, "val")))
    info = json.loads((run / "run.json").read_text())
    assert info["steps"] == 80 and info["tokens"] == 80 * 4 * 32
    assert info["flops"] == info["flops_per_token"] * info["tokens"]
    model = AutoModelForCausalLM.from_pretrained(run)
    tok = AutoTokenizer.from_pretrained(run)
    ids = tok("Dopamine", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.eos_token_id)
    assert out.shape[1] > ids.shape[1]
    assert (run / "best" / "model.safetensors").is_file()
    assert len(list((run / "checkpoints").glob("step-*"))) == 2


def test_existing_run_and_bad_options_are_refused(shards, tmp_path):
    train(shards, tmp_path / "run", **TINY, max_steps=2)
    with pytest.raises(ExpertlmError, match="already exists"):
        train(shards, tmp_path / "run", **TINY, max_steps=2)
    with pytest.raises(ExpertlmError, match="no checkpoint"):
        train(shards, tmp_path / "other", **TINY, max_steps=2, resume=True)
    with pytest.raises(ExpertlmError, match="preset"):
        train(shards, tmp_path / "x", **(TINY | {"preset": "gpt5"}), max_steps=2)
    with pytest.raises(ExpertlmError, match="batch-tokens"):
        train(shards, tmp_path / "y", **TINY, max_steps=2, batch_tokens=100)


def test_continued_pretraining_refuses_a_model_with_a_smaller_vocabulary(shards, tmp_path):
    from expertlm.models import build_model, gpt2_config

    small = build_model(gpt2_config("gpt2-tiny", vocab_size=50, eot_id=0))
    small.save_pretrained(tmp_path / "small")
    with pytest.raises(ExpertlmError, match="vocabulary"):
        train(shards, tmp_path / "run", **(TINY | {"init": str(tmp_path / "small")}), max_steps=2)


SCRIPT = """
import sys
from expertlm.train import train
train(sys.argv[1], sys.argv[2], preset="gpt2-tiny", context=32, micro_batch=16, lr=3e-3,
      max_steps=60, ckpt_every_steps=10, log_every_steps=1, val_every_steps=1000,
      show_progress=False, resume=len(sys.argv) > 3)
"""


def test_a_run_killed_with_sigkill_resumes_to_the_same_losses_bit_for_bit(shards, tmp_path):
    env = dict(os.environ, EXPERTLM_NO_PROGRESS="1", OMP_NUM_THREADS="1")
    whole = tmp_path / "whole"
    subprocess.run([sys.executable, "-c", SCRIPT, str(shards), str(whole)], check=True, env=env)

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(shards), str(killed)], env=env)
    deadline = time.time() + 120
    while not (killed / "checkpoints" / "step-00000020" / "trainer_state" / "state.json").exists():
        assert proc.poll() is None and time.time() < deadline, (
            "the run ended before it could be killed"
        )
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not (killed / "run.json").exists()  # it really died mid-way

    subprocess.run(
        [sys.executable, "-c", SCRIPT, str(shards), str(killed), "resume"], check=True, env=env
    )
    a, b = losses(whole), losses(killed)
    assert sorted(a) == sorted(b) == list(range(1, 61))
    assert a == b  # exact float equality, every step


@pytest.mark.e2e
def test_two_ddp_processes_give_the_losses_of_one_with_the_same_global_batch(shards, tmp_path):
    env = dict(os.environ, EXPERTLM_NO_PROGRESS="1", OMP_NUM_THREADS="1")
    common = ["train", str(shards), "--preset", "gpt2-tiny", "--context", "32", "--micro-batch", "4",
              "--batch-tokens", str(2 * 4 * 32), "--max-steps", "6", "--lr", "3e-3", "--log-every-steps", "1",
              "--no-progress"]  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "expertlm", *common, "--out", str(tmp_path / "one")],
        check=True,
        env=env,
    )
    subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "expertlm", *common, "--out", str(tmp_path / "two")],
        check=True, env=env,
    )  # fmt: skip
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert sorted(one) == sorted(two) == list(range(1, 7))
    for step in one:
        assert two[step] == pytest.approx(one[step], abs=1e-5)
    assert json.loads((tmp_path / "two" / "run.json").read_text())["world_size"] == 2


def test_continued_pretraining_of_a_llama_style_model(shards, tmp_path):
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    from expertlm.shards import read_meta

    cfg = LlamaConfig(vocab_size=read_meta(shards)["vocab_size"], hidden_size=32, intermediate_size=64,
                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                      max_position_embeddings=64)  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "llama")
    run = train(shards, tmp_path / "run", init=str(tmp_path / "llama"), micro_batch=4, max_steps=3,
                show_progress=False)  # fmt: skip
    info = json.loads((run / "run.json").read_text())
    assert info["context"] == 64 and info["lr"] == 1e-4  # the continued-pretraining default
    assert AutoModelForCausalLM.from_pretrained(run).config.model_type == "llama"


def test_a_nan_loss_stops_with_the_last_good_checkpoint_named(shards, tmp_path, monkeypatch):
    train_mod = importlib.import_module("expertlm.train")

    real = train_mod.train_step
    calls = []

    def flaky(*args, **kwargs):
        loss, norm = real(*args, **kwargs)
        calls.append(loss)
        return (float("nan") if len(calls) == 5 else loss), norm

    monkeypatch.setattr(train_mod, "train_step", flaky)
    with pytest.raises(ExpertlmError, match=r"loss became nan at step 5.*step-00000004"):
        train(shards, tmp_path / "run", **TINY, max_steps=10, ckpt_every_steps=2)
    assert (tmp_path / "run" / "checkpoints" / "step-00000004" / "model.safetensors").is_file()


def test_metrics_go_to_tensorboard_when_it_is_installed(shards, tmp_path):
    pytest.importorskip("tensorboard")
    run = train(shards, tmp_path / "run", **TINY, max_steps=3, log_every_steps=1)
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))


def test_an_empty_validation_split_gives_no_validation_loss(shards, tmp_path):
    import shutil

    empty = tmp_path / "shards"
    shutil.copytree(shards, empty)
    (empty / "val.bin").write_bytes(b"")
    meta = json.loads((empty / "meta.json").read_text())
    (empty / "meta.json").write_text(json.dumps(meta | {"tokens": meta["tokens"] | {"val": 0}}))
    run = train(empty, tmp_path / "run", **TINY, max_steps=3)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows and not any("val_loss" in r for r in rows)
    assert not (run / "best").exists()


def test_resume_keeps_the_runs_own_options_and_takes_a_new_budget(shards, tmp_path):
    train(shards, tmp_path / "run", **TINY, max_steps=4, ckpt_every_steps=2, warmup_steps=1)
    # a bare resume (other lr, preset defaults) with a longer budget
    train(shards, tmp_path / "run", resume=True, max_steps=6, show_progress=False)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["steps"] == 6 and info["lr"] == 3e-3 and info["context"] == 32
    assert info["config"]["preset"] == "gpt2-tiny" and info["config"]["max_steps"] == 6


@pytest.mark.e2e
def test_fsdp_matches_one_process_and_resumes(shards, tmp_path):
    # 2 micro batches per step on each of 2 processes, 4 on one: accumulation is exercised too
    from transformers import AutoModelForCausalLM

    env = dict(os.environ, EXPERTLM_NO_PROGRESS="1", OMP_NUM_THREADS="1")
    common = ["train", str(shards), "--preset", "gpt2-tiny", "--context", "32", "--micro-batch", "4",
              "--batch-tokens", str(2 * 2 * 4 * 32), "--lr", "3e-3", "--log-every-steps", "1",
              "--ckpt-every-steps", "3", "--no-progress"]  # fmt: skip
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "expertlm",
    ]

    def run(*args: str) -> None:
        subprocess.run(list(args), check=True, env=env)

    one, sharded = tmp_path / "one", tmp_path / "fsdp"
    run(sys.executable, "-m", "expertlm", *common, "--max-steps", "6", "--out", str(one))
    run(*torchrun, *common, "--fsdp", "--max-steps", "6", "--out", str(sharded))
    for step, loss in losses(one).items():
        assert losses(sharded)[step] == pytest.approx(loss, abs=1e-5)
    # resume from the step-3 checkpoint, as if the run had died after it: the same losses again
    shutil.rmtree(sharded / "checkpoints" / "step-00000006")
    run(*torchrun, *common, "--fsdp", "--max-steps", "6", "--resume", "--out", str(sharded))
    assert sorted(losses(sharded)) == list(range(1, 7))
    for step, loss in losses(one).items():
        assert losses(sharded)[step] == pytest.approx(loss, abs=1e-5)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "fsdp")
    assert type(model).__name__ == "GPT2LMHeadModel"


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("frozen", [False, True])
def test_the_fused_head_and_loss_equal_the_logits_and_cross_entropy(bf16, frozen):
    # 1,000 rows in chunks of 128 (the last one short), a 300-token vocabulary
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(1000, 64, generator=g, requires_grad=True)
    weight = (0.1 * torch.randn(300, 64, generator=g)).requires_grad_(not frozen)
    targets = torch.randint(0, 300, (1000,), generator=g)
    wanted = [hidden] if frozen else [hidden, weight]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        ref = torch.nn.functional.cross_entropy((hidden @ weight.T).float(), targets)
    ref_grads = torch.autograd.grad(0.5 * ref, wanted)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        got = linear_cross_entropy(hidden, weight, targets, rows=128)
    grads = torch.autograd.grad(0.5 * got, wanted)  # a scaled loss scales the gradients
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)
    # fp32: float rounding; bf16: both run the matmuls in bf16 (the fused one sums the weight's
    # gradient over the chunks in fp32, the unfused one in one bf16 product)
    tol = 2e-2 if bf16 else 1e-5
    for a, b in zip(grads, ref_grads, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert (a - b).abs().max() <= tol * b.abs().max()


@pytest.mark.parametrize("variant", ["fused", "compiled"])
def test_causal_lm_trains_a_gpt2_fused_or_compiled_to_the_losses_of_its_logits(variant):
    """The head fused with the loss, or (--compile in bf16) the model, a plain head and the loss
    compiled as one graph, train to the losses of the plain logits and cross-entropy."""
    from expertlm.train import adamw, train_step

    tokens = np.random.default_rng(0).integers(0, 97, 4000).astype(np.uint16)
    cfg = TrainConfig(lr=3e-3, micro_batch=4)
    runs = {}
    for name in ("plain", variant):
        model = random_gpt2(97, n_positions=32).train()
        for m in model.modules():  # no dropout: compiled code draws its own random numbers
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        assert fused_head(model) is model.lm_head and fused_head(model, fsdp=True) is None
        w = Windows(tokens, 32, seed=0)
        head = None if name == "plain" else fused_head(model)
        objective = CausalLM(w, w, 4, head=head, compile=name == "compiled")
        # compiled: no fused head (the compiler fuses the softmax with the loss), and the caller
        # keeps the model uncompiled, as `train --compile` does
        assert objective.compiles_forward is (name == "compiled")
        assert (objective.head is None) is (name != "fused")
        optimizer = adamw(model, cfg, cfg.lr)
        runs[name] = [train_step(model, model, optimizer, [w.batch(2 * s, 2), w.batch(2 * s + 2, 2)],
                                 objective, cfg, torch.device("cpu")) for s in range(4)]  # fmt: skip
    for (loss, metrics), (ref_loss, ref_metrics) in zip(runs[variant], runs["plain"], strict=True):
        assert loss == pytest.approx(ref_loss, rel=1e-5)
        assert metrics["grad_norm"] == pytest.approx(ref_metrics["grad_norm"], rel=1e-4)


def test_only_a_gpt2s_plain_linear_head_is_fused():
    from transformers import LlamaConfig, LlamaForCausalLM

    llama = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2))  # fmt: skip
    assert fused_head(llama) is None  # its last hidden state is not promised to be the head's input
    assert fused_head(random_gpt2(50)) is not None


def test_bf16_autocast_trains_and_saves_fp32_weights(shards, tmp_path):
    from safetensors.torch import load_file

    run = train(shards, tmp_path / "run", **TINY, max_steps=3, bf16=True, log_every_steps=1)
    assert all(math.isfinite(v) for v in losses(run).values())
    weights = load_file(run / "model.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.float32}


@pytest.mark.parametrize("native", [True, False])
def test_bf16_auto_is_bf16_where_the_device_has_it_and_run_json_says_which(
    shards, tmp_path, monkeypatch, native
):
    from expertlm import dist

    seen = []
    monkeypatch.setattr(dist, "native_bf16", lambda device: seen.append(device.type) or native)
    run = train(shards, tmp_path / "run", **TINY, max_steps=2, ckpt_every_steps=1, bf16="auto")
    assert seen == ["cpu"]
    assert json.loads((run / "run.json").read_text())["config"]["bf16"] is native
    # a resume with auto keeps what the run resolved to (even where this machine would not)
    monkeypatch.setattr(dist, "native_bf16", lambda device: not native)
    train(shards, run, resume=True, max_steps=3, bf16="auto", show_progress=False)
    assert json.loads((run / "run.json").read_text())["config"]["bf16"] is native


def test_native_bf16_asks_the_cpu_for_avx512_bf16_or_amx(monkeypatch):
    from expertlm import dist

    cpu = torch.device("cpu")
    for avx512_bf16, amx, expected in ((False, False, False), (True, False, True), (False, True, True)):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v, raising=False)
        assert dist.native_bf16(cpu) is expected
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    assert dist.native_bf16(cpu) is False  # a build without the probes
    assert dist.native_bf16(torch.device("meta")) is False


def test_bf16_on_a_cpu_runs_attention_in_fp32_and_saves_a_plain_sdpa_model(tmp_path):
    """Under bf16 autocast the fp32 attention returns fp32 SDPA of the same (bf16) inputs,
    rounded to bf16; the model trains the same to bf16 rounding, and the folder it saves names no
    attention implementation."""
    from transformers import AutoModelForCausalLM
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from expertlm.cpu import FP32_SDPA, _sdpa_fp32, cpu_training

    plain, ours = random_gpt2(50), random_gpt2(50)
    ours.load_state_dict(plain.state_dict())
    assert cpu_training(ours, bf16=True) and ours.config._attn_implementation == FP32_SDPA
    assert not cpu_training(ours, bf16=True)  # (not on SDPA any more: nothing to do)
    attn = ours.transformer.h[0].attn
    q, k, v = (torch.randn(2, 2, 16, 8).bfloat16() for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = _sdpa_fp32(attn, q, k, v, None, dropout=0.0)
    expected, _ = sdpa_attention_forward(attn, q.float(), k.float(), v.float(), None, dropout=0.0)
    assert out.dtype == torch.bfloat16 and torch.equal(out, expected.bfloat16())
    x = torch.randint(0, 50, (2, 16))
    losses = {}
    for name, model in (("plain", plain), ("ours", ours)):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(x, labels=x).loss
        loss.backward()
        losses[name] = loss.item()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert losses["ours"] == pytest.approx(losses["plain"], rel=1e-2)
    ours.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert not any("attn_impl" in k for k in config)
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "m").config._attn_implementation == "sdpa"


def test_dropout_noise_drops_at_rate_p_scales_by_one_over_keep_and_follows_the_seed():
    from expertlm.cpu import dropout_noise

    x = torch.empty(4_000_000)
    torch.manual_seed(3)
    a = dropout_noise(x, 0.1)
    torch.manual_seed(3)
    b = dropout_noise(x, 0.1)
    c = dropout_noise(x, 0.1)
    assert torch.equal(a, b) and not torch.equal(b, c)  # torch's generator decides the masks
    assert set(a.unique().tolist()) == {0.0, torch.tensor(1 / 0.9).item()}
    keep = 58_982 / 65_536  # round(0.9 * 2**16) / 2**16
    sd = (keep * (1 - keep) / 1_000_000) ** 0.5
    for lane in range(4):  # each 64-bit draw gives four values: every one of them uniform
        kept = (a[lane::4] > 0).double().mean().item()
        assert abs(kept - keep) < 5 * sd, (lane, kept)
    half = dropout_noise(torch.empty(3, 5, dtype=torch.bfloat16), 0.5)  # (an odd count, a dtype)
    assert half.shape == (3, 5) and half.dtype == torch.bfloat16
    assert set(half.unique().tolist()) <= {0.0, 2.0}


class _Heads(torch.nn.Module):  # what the attention functions read from an attention module
    def __init__(self, groups: int = 1) -> None:
        super().__init__()
        self.is_causal, self.num_key_value_groups = True, groups


@pytest.mark.parametrize("case", ["causal", "padding", "additive", "grouped"])
def test_cpu_attention_with_dropout_is_sdpa_with_the_mask_on_the_probabilities(case, monkeypatch):
    """With every mask value 1 it is SDPA without dropout, values and gradients (padding: a
    row with nothing to attend to gives 0); with the drawn mask it is softmax(QK^T s + causal)
    times the mask, times V."""
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    from expertlm import cpu

    torch.manual_seed(0)
    groups = 2 if case == "grouped" else 1
    q = torch.randn(2, 4, 6, 8, requires_grad=True)
    k, v = (torch.randn(2, 4 // groups, 6, 8, requires_grad=True) for _ in range(2))
    mask = None
    if case == "padding":  # left padding: the second sequence's first two tokens are pads
        mask = torch.ones(2, 1, 6, 6, dtype=torch.bool).tril()
        mask[1, :, :, :2] = False
    elif case == "additive":
        mask = torch.randn(2, 1, 6, 6)
    module = _Heads(groups)
    expected, _ = sdpa_attention_forward(module, q, k, v, mask, dropout=0.0, scaling=0.3)
    expected_grads = torch.autograd.grad(expected.square().sum(), (q, k, v))
    with monkeypatch.context() as m:
        m.setattr(cpu, "dropout_noise", lambda x, p: torch.ones_like(x))
        out, _ = cpu._sdpa_cpu(module, q, k, v, mask, dropout=0.1, scaling=0.3)
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    assert out.shape == expected.shape == (2, 6, 4, 8)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    for g, e in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-5)

    drawn = []
    real = cpu.dropout_noise
    monkeypatch.setattr(cpu, "dropout_noise", lambda x, p: drawn.append(real(x, p)) or drawn[-1])
    out, _ = cpu._sdpa_cpu(module, q, k, v, mask, dropout=0.1, scaling=0.3)
    kk, vv = repeat_kv(k, groups), repeat_kv(v, groups)
    scores = q @ kk.transpose(-1, -2) * 0.3
    if mask is None:
        scores = scores.masked_fill(torch.ones(6, 6, dtype=torch.bool).triu(1), float("-inf"))
    elif mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask, float("-inf"))
    else:
        scores = scores + mask
    probs = torch.softmax(scores, -1).nan_to_num(0.0)
    torch.testing.assert_close(out, ((probs * drawn[0]) @ vv).transpose(1, 2), atol=1e-5, rtol=1e-5)
    assert (drawn[0] == 0).any() and drawn[0].shape == (2, 4, 6, 6)


def test_a_model_prepared_for_cpu_training_keeps_its_masks_and_draws_dropout_from_the_seed(tmp_path):
    """`cpu_training` in fp32: every nn.Dropout drawn by dropout_noise, the attention's padding
    mask still applied (in eval: the same logits as plain SDPA, left padding included), training
    losses fixed by the seed, and a saved folder that loads with SDPA."""
    from transformers import AutoModelForCausalLM

    from expertlm.cpu import CPU_SDPA, cpu_training

    plain, ours = random_gpt2(50), random_gpt2(50)
    ours.load_state_dict(plain.state_dict())
    assert cpu_training(ours, bf16=False) and ours.config._attn_implementation == CPU_SDPA
    dropouts = [m for m in ours.modules() if isinstance(m, torch.nn.Dropout)]
    assert len(dropouts) == 1 + 3 * 2 and all(type(m) is not torch.nn.Dropout for m in dropouts)
    x = torch.randint(1, 50, (2, 10))
    padding = torch.tensor([[1] * 10, [0, 0, 0] + [1] * 7])
    with torch.no_grad():
        torch.testing.assert_close(ours(x, attention_mask=padding).logits,
                                   plain(x, attention_mask=padding).logits, atol=1e-5, rtol=1e-5)  # fmt: skip
        evaluated = ours(x, labels=x).loss.item()
    ours.train()
    losses = []
    for _ in range(2):
        torch.manual_seed(7)
        losses.append(ours(x, labels=x).loss.item())
    assert losses[0] == losses[1] and losses[0] != evaluated  # dropout on, fixed by the seed
    ours.save_pretrained(tmp_path / "m")
    assert not any("attn_impl" in k for k in json.loads((tmp_path / "m" / "config.json").read_text()))
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "m").config._attn_implementation == "sdpa"


def test_the_causal_lm_loss_is_the_mean_next_token_cross_entropy():
    tokens = np.random.default_rng(0).integers(0, 50, size=201).astype(np.uint16)
    objective = CausalLM(Windows(tokens, 16, seed=0), Windows(tokens, 16, seed=0), val_windows=4)
    xy = objective.batch(0, 3)  # (B, T + 1)
    model = random_gpt2(vocab=50, n_positions=16)
    loss, metrics = objective.loss(model, xy)
    with torch.no_grad():
        logits = model(input_ids=xy[:, :-1]).logits.double()  # (B, T, V)
    logp = logits - logits.exp().sum(-1, keepdim=True).log()  # log softmax, by hand, in fp64
    nll = -logp.gather(-1, xy[:, 1:, None]).squeeze(-1)  # (B, T): token t + 1 given tokens <= t
    assert loss.item() == pytest.approx(nll.mean().item(), rel=1e-6)
    assert metrics == {}
    assert objective.tokens(5) == 5 * 16


class CopyTheToken(Objective):
    """A toy objective, not a language model: predict each input token itself, from batches of
    its own (random ids, seeded by position) and with a metric of its own."""

    def __init__(self, vocab: int) -> None:
        self.vocab, self.examples = vocab, 1000

    def batch(self, position: int, size: int) -> torch.Tensor:
        return torch.randint(
            0, self.vocab, (size, 8), generator=torch.Generator().manual_seed(position)
        )

    def loss(self, forward, ids):
        logits = forward(input_ids=ids).logits.float()  # (B, T, V)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, self.vocab), ids.reshape(-1))
        return loss, {"copy_accuracy": (logits.argmax(-1) == ids).float().mean().item()}

    def tokens(self, position: int) -> int:
        return position * 8

    def validate(self, model, micro_batch, device, bf16):
        return {}


def test_a_new_objective_trains_through_fit_without_touching_the_loop(shards, tmp_path):
    run, _ = setup(
        shards, tmp_path / "run", **TINY, max_steps=12, ckpt_every_steps=6, log_every_steps=1
    )
    toy = CopyTheToken(run.model.config.vocab_size)
    fit(run, toy)
    out = finish(run)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert all(0 <= r["copy_accuracy"] <= 1 for r in rows)
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert rows[-1]["tokens"] == toy.tokens(12 * 4) == 12 * 4 * 8
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*")) == [
        "step-00000006",
        "step-00000012",
    ]
    state = json.loads(
        (out / "checkpoints" / "step-00000012" / "trainer_state" / "state.json").read_text()
    )
    assert state["step"] == 12 and state["position"] == 12 * 4
    assert json.loads((out / "run.json").read_text())["tokens"] == 12 * 4 * 8
