"""Post-training objectives (SFT, DPO, ORPO): data rendering and masks, parity of the losses and
their gradients with TRL's trainers, and `expertlm train --objective ...` end to end."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from expertlm.chat import DEFAULT_CHAT_TEMPLATE, Renderer, read_preferences, read_sft
from expertlm.errors import ExpertlmError
from expertlm.objectives import DPO, ORPO, SFT, dpo_loss, orpo_loss, pad
from expertlm.train import train

from lm_fixtures import make_tokenizer, random_gpt2, save_model

PAIRS = [
    {"prompt": "Lesions of the hippocampus", "chosen": " reduced fear learning.",
     "rejected": " increased fear learning in mice."},
    {"prompt": "", "chosen": "Serotonin enhanced synaptic plasticity.",
     "rejected": "Serotonin impaired plasticity."},
    {"chosen": [{"role": "user", "content": "Knockout?"},
                {"role": "assistant", "content": "impaired memory"}],
     "rejected": [{"role": "user", "content": "Knockout?"},
                  {"role": "assistant", "content": "enhanced memory"}]},
]  # fmt: skip
SFT_ROWS = [
    {"messages": [{"role": "system", "content": "You are a neuroscientist."},
                  {"role": "user", "content": "Does dopamine increase?"},
                  {"role": "assistant", "content": "Dopamine release decreased."},
                  {"role": "user", "content": "And firing?"},
                  {"role": "assistant", "content": "Firing increased."}]},
    {"prompt": "The receptor", "completion": " increased firing in cortical neurons."},
]  # fmt: skip


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory) -> Path:
    return make_tokenizer(tmp_path_factory.mktemp("tok") / "tok")


@pytest.fixture(scope="module")
def tokenizer(tok_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tok_dir)


@pytest.fixture(scope="module")
def model_dir(tok_dir, tmp_path_factory) -> Path:
    return save_model(random_gpt2(300), tok_dir, tmp_path_factory.mktemp("m") / "model")


def trained_text(tokenizer, seq) -> str:
    return "".join(
        tokenizer.decode([i]) if m else "_" for i, m in zip(seq.ids, seq.mask, strict=True)
    )


# --- data: templates and masks ---------------------------------------------------------------


def test_the_default_template_renders_as_documented_and_trains_on_assistant_turns(
    tokenizer, tmp_path
):
    r = Renderer(copy.deepcopy(tokenizer))
    assert r.tok.chat_template == DEFAULT_CHAT_TEMPLATE
    msgs = SFT_ROWS[0]["messages"]
    assert r.render(msgs) == (
        "<|system|>\nYou are a neuroscientist.\n<|user|>\nDoes dopamine increase?\n<|assistant|>\n"
        "Dopamine release decreased.<|endoftext|>\n<|user|>\nAnd firing?\n<|assistant|>\n"
        "Firing increased.<|endoftext|>"
    )
    conv, completion = read_sft(write_jsonl(tmp_path / "sft.jsonl", SFT_ROWS), r)
    assert trained_text(tokenizer, conv).replace("_", "") == (
        "Dopamine release decreased.<|endoftext|>Firing increased.<|endoftext|>"
    )
    assert trained_text(tokenizer, completion).replace("_", "") == (
        " increased firing in cortical neurons.<|endoftext|>"
    )
    everything = read_sft(tmp_path / "sft.jsonl", Renderer(copy.deepcopy(tokenizer), "all"))
    assert all(all(e.mask) for e in everything)


def test_preference_prompts_are_given_shared_or_empty(tokenizer, tmp_path):
    pairs = read_preferences(
        write_jsonl(tmp_path / "p.jsonl", PAIRS), Renderer(copy.deepcopy(tokenizer))
    )
    texts = [(trained_text(tokenizer, p.chosen).replace("_", ""),
              trained_text(tokenizer, p.rejected).replace("_", "")) for p in pairs]  # fmt: skip
    assert texts[0] == (" reduced fear learning.<|endoftext|>",
                        " increased fear learning in mice.<|endoftext|>")  # fmt: skip
    # an empty prompt: the whole texts (the first token has nothing to be predicted from)
    assert (
        tokenizer.decode(pairs[1].chosen.ids)
        == "Serotonin enhanced synaptic plasticity.<|endoftext|>"
    )
    assert pairs[1].chosen.mask == [1] * len(pairs[1].chosen.ids)
    # no prompt: the shared leading messages are the prompt
    assert texts[2] == ("impaired memory<|endoftext|>", "enhanced memory<|endoftext|>")


@pytest.mark.parametrize(
    ("row", "fragment"),
    [({"chosen": "a"}, "missing key(s) rejected"),
     ({"prompt": "p", "chosen": "a", "rejected": [{"role": "assistant", "content": "b"}]},
      "must all be strings or all message lists"),
     ({"chosen": [{"role": "robot", "content": "x"}], "rejected": [{"role": "user", "content": "y"}]},
      "key 'chosen': each message must be")],
)  # fmt: skip
def test_bad_preference_records_name_file_and_line(tokenizer, tmp_path, row, fragment):
    path = write_jsonl(tmp_path / "p.jsonl", [PAIRS[0], row])
    with pytest.raises(ExpertlmError, match=f"p.jsonl:2: .*{__import__('re').escape(fragment)}"):
        read_preferences(path, Renderer(copy.deepcopy(tokenizer)))


# --- the losses ------------------------------------------------------------------------------


def test_the_sft_loss_is_the_mean_nll_of_the_assistant_tokens_by_hand(tokenizer, tmp_path):
    seqs = read_sft(
        write_jsonl(tmp_path / "sft.jsonl", SFT_ROWS), Renderer(copy.deepcopy(tokenizer))
    )
    model = random_gpt2(300, n_positions=256, seed=3).double()
    loss, _ = SFT(seqs, [], 0, 0).loss(model, pad(seqs, 0))
    # by hand: each sequence alone (no padding), float64, the trained tokens' -log p summed
    total, count = 0.0, 0
    for s in seqs:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([s.ids])).logits[0]
        logp = torch.log_softmax(logits, -1)
        for j in range(1, len(s.ids)):
            if s.mask[j]:
                total -= logp[j - 1, s.ids[j]].item()
                count += 1
    assert count == sum(sum(s.mask[1:]) for s in seqs) > 10
    assert loss.item() == pytest.approx(total / count, rel=1e-6)  # the loss takes fp32 logits


def trl_dpo_stub(policy, reference, beta: float, precompute: bool):
    """A DPOTrainer with only what `_compute_loss` reads (its __init__ needs a dataset)."""
    from trl.trainer.dpo_trainer import DPOTrainer

    acc = SimpleNamespace(device=torch.device("cpu"), gather_for_metrics=lambda x: x,
                          gather=lambda x: x, unwrap_model=lambda m: m)  # fmt: skip
    stub = DPOTrainer.__new__(DPOTrainer)
    fields = dict(model=policy, ref_model=reference, accelerator=acc, aux_loss_enabled=False,
                  ld_alpha=None, precompute_ref_logps=precompute, f_divergence_type="reverse_kl",
                  loss_types=["sigmoid"], loss_weights=[1.0], beta=beta, use_weighting=False,
                  _metrics=defaultdict(lambda: defaultdict(list)), _total_train_tokens=0,
                  _tp_size=1, args=SimpleNamespace(gradient_checkpointing_kwargs=None))  # fmt: skip
    for k, v in fields.items():
        object.__setattr__(stub, k, v)
    return stub


def trl_orpo_stub(lam: float):
    from trl.experimental.orpo import ORPOTrainer

    stub = ORPOTrainer.__new__(ORPOTrainer)
    acc = SimpleNamespace(device=torch.device("cpu"), gather_for_metrics=lambda x: x)
    for k, v in dict(beta=lam, is_encoder_decoder=False, padding_value=0,
                     aux_loss_enabled=False, accelerator=acc).items():  # fmt: skip
        object.__setattr__(stub, k, v)
    return stub


def logps_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    # mean per-token log-probs in (-6, -0.01), some near log 1 (ORPO's log1mexp branch)
    pc, pr = -torch.rand(4, generator=g) * 6 - 0.01, -torch.rand(4, generator=g) * 6 - 0.01
    pc[0], pr[1] = -0.02, -0.5
    rc, rr = pc + torch.randn(4, generator=g), pr + torch.randn(4, generator=g)
    return pc, pr, rc, rr


def test_dpo_loss_and_gradients_wrt_the_policy_logps_equal_trls():
    from trl.trainer.dpo_trainer import DPOTrainer

    pc, pr, rc, rr = (x * 10 for x in logps_batch())  # summed log-probs
    ours_in = [pc.clone().requires_grad_(), pr.clone().requires_grad_()]
    loss, metrics = dpo_loss(*ours_in, rc, rr, beta=0.1)
    ours_grad = torch.autograd.grad(loss, ours_in)
    # TRL: the policy's per-token log-probs are one "token" per sequence, its sum the logps
    leaf = torch.cat([pc, pr]).unsqueeze(1).clone().requires_grad_()
    model = SimpleNamespace(training=False)
    zeros = torch.zeros_like(leaf)
    stub = trl_dpo_stub(model, None, 0.1, precompute=True)
    stub.model = model
    fake = lambda **kw: SimpleNamespace(log_probs=leaf, entropy=zeros, mean_logits=zeros,  # noqa: E731
                                        is_top1=zeros.bool())  # fmt: skip
    inputs = {"input_ids": torch.zeros(8, 2, dtype=torch.long), "attention_mask": torch.ones(8, 2),
              "completion_mask": torch.ones(8, 2), "ref_chosen_logps": rc, "ref_rejected_logps": rr}  # fmt: skip
    trl_loss = DPOTrainer._compute_loss(stub, fake, inputs, False)
    (trl_grad,) = torch.autograd.grad(trl_loss, leaf)
    assert abs(loss.item() - trl_loss.item()) < 1e-5
    assert (torch.cat(ours_grad) - trl_grad[:, 0]).abs().max() < 1e-5
    trl_metrics = {k: v[-1] for k, v in stub._metrics["eval"].items() if k.startswith("rewards/")}
    assert trl_metrics.keys() == metrics.keys()
    assert all(abs(metrics[k] - trl_metrics[k]) < 1e-5 for k in metrics)


def test_orpo_loss_and_gradients_wrt_the_policy_logps_equal_trls():
    from trl.experimental.orpo import ORPOTrainer

    pc, pr, _, _ = logps_batch(1)
    nll = torch.tensor(2.5)
    ours_in = [pc.clone().requires_grad_(), pr.clone().requires_grad_()]
    loss, metrics = orpo_loss(*ours_in, nll, lam=0.1)
    ours_grad = torch.autograd.grad(loss, ours_in)
    trl_in = [pc.clone().requires_grad_(), pr.clone().requires_grad_()]
    losses, chosen_r, rejected_r, ratio, log_odds = ORPOTrainer.odds_ratio_loss(
        trl_orpo_stub(0.1), *trl_in
    )
    trl_loss = nll - losses.mean()  # ORPOTrainer.get_batch_loss_metrics
    trl_grad = torch.autograd.grad(trl_loss, trl_in)
    assert abs(loss.item() - trl_loss.item()) < 1e-5
    assert max((a - b).abs().max().item() for a, b in zip(ours_grad, trl_grad, strict=True)) < 1e-5
    assert abs(metrics["rewards/chosen"] - chosen_r.mean().item()) < 1e-6
    assert abs(metrics["rewards/accuracies"] - (chosen_r > rejected_r).float().mean().item()) < 1e-6
    assert abs(metrics["log_odds_ratio"] - ratio.item()) < 1e-6
    assert abs(metrics["log_odds_chosen"] - log_odds.item()) < 1e-6


def max_diff(a, b) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b, strict=True))


def test_dpo_from_a_model_equals_trls_dpo_trainer_with_its_fused_head(tokenizer, tmp_path):
    """The whole chain (log-probs of the completion tokens of a padded batch, the reference,
    the loss, the metrics) and the gradients w.r.t. the policy's parameters."""
    from trl.trainer.dpo_trainer import DPOTrainer
    from trl.trainer.utils import add_fused_lm_head

    pairs = read_preferences(
        write_jsonl(tmp_path / "p.jsonl", PAIRS), Renderer(copy.deepcopy(tokenizer))
    )
    policy, reference = random_gpt2(300, seed=0), random_gpt2(300, seed=1)  # eval mode: no dropout
    b = pad([p.chosen for p in pairs] + [p.rejected for p in pairs], 0)
    loss, metrics = DPO(pairs, [], 0, 0, reference, beta=0.1).loss(policy, b)
    grads = torch.autograd.grad(loss, list(policy.parameters()))
    trl_policy, trl_ref = copy.deepcopy(policy), copy.deepcopy(reference)
    add_fused_lm_head(trl_policy, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
    add_fused_lm_head(trl_ref)
    stub = trl_dpo_stub(trl_policy, trl_ref, 0.1, precompute=False)
    inputs = {"input_ids": b.ids, "attention_mask": b.attention, "completion_mask": b.mask}
    trl_loss = DPOTrainer._compute_loss(stub, trl_policy, inputs, False)
    trl_grads = torch.autograd.grad(trl_loss, list(trl_policy.parameters()))
    assert abs(loss.item() - trl_loss.item()) < 1e-5
    assert max_diff(grads, trl_grads) < 1e-5
    trl_metrics = {k: v[-1] for k, v in stub._metrics["eval"].items() if k.startswith("rewards/")}
    assert all(abs(metrics[k] - trl_metrics[k]) < 1e-5 for k in metrics)
    assert metrics["rewards/margins"] != 0  # policy and reference differ


def test_orpo_from_a_model_equals_trls_orpo_trainer(tokenizer, tmp_path):
    """ORPOTrainer's NLL is over the whole chosen text: --loss-on all is the same loss."""
    from trl.experimental.orpo import ORPOTrainer

    pairs = read_preferences(
        write_jsonl(tmp_path / "p.jsonl", PAIRS), Renderer(copy.deepcopy(tokenizer))
    )
    policy = random_gpt2(300, seed=2)
    b = pad([p.chosen for p in pairs] + [p.rejected for p in pairs], 0)
    loss, metrics = ORPO(pairs, [], 0, 0, lam=0.1, nll_on_all=True).loss(policy, b)
    grads = torch.autograd.grad(loss, list(policy.parameters()))
    n, labels = len(pairs), b.ids.masked_fill(b.mask == 0, -100)
    batch = {"chosen_input_ids": b.ids[:n], "chosen_attention_mask": b.attention[:n],
             "chosen_labels": labels[:n], "rejected_input_ids": b.ids[n:],
             "rejected_attention_mask": b.attention[n:], "rejected_labels": labels[n:]}  # fmt: skip
    trl_loss, trl_metrics = ORPOTrainer.get_batch_loss_metrics(trl_orpo_stub(0.1), policy, batch)
    trl_grads = torch.autograd.grad(trl_loss, list(policy.parameters()))
    assert abs(loss.item() - trl_loss.item()) < 1e-5
    assert max_diff(grads, trl_grads) < 1e-5
    assert all(abs(metrics[k] - trl_metrics[k]) < 1e-5 for k in metrics)
    # the default: the NLL of the chosen answers' tokens only (the ORPO paper's L_SFT)
    default, _ = ORPO(pairs, [], 0, 0, lam=0.1).loss(policy, b)
    assert not math.isclose(default.item(), loss.item())


# --- train --objective -----------------------------------------------------------------------


def run_cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "EXPERTLM_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "expertlm", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=300)  # fmt: skip


def test_train_dpo_end_to_end_through_the_cli(model_dir, tmp_path):
    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS * 4)
    proc = run_cli("train", data, "--objective", "dpo", "--init", model_dir, "--out", tmp_path / "run",
                   "--max-steps", "3", "--micro-batch", "2", "--log-every-steps", "1", "--beta", "0.05")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[0]["rewards/margins"] == 0.0  # the policy starts as its reference
    assert {"rewards/chosen", "rewards/rejected", "rewards/accuracies", "val_loss"} <= rows[
        -1
    ].keys()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(tmp_path / "run")
    tok = AutoTokenizer.from_pretrained(tmp_path / "run")
    assert tok.chat_template == DEFAULT_CHAT_TEMPLATE  # the run's tokenizer renders as trained
    run_json = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run_json["config"]["objective"] == "dpo" and run_json["config"]["beta"] == 0.05


def losses(run: Path) -> dict[int, float]:
    rows = (json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines())
    return {r["step"]: r["loss"] for r in rows}


@pytest.mark.parametrize("objective", ["sft", "orpo"])
def test_a_resumed_run_takes_the_same_steps(objective, model_dir, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", (SFT_ROWS if objective == "sft" else PAIRS) * 4)
    opts = dict(objective=objective, init=str(model_dir), micro_batch=2, ckpt_every_steps=2,
                log_every_steps=1, warmup_steps=1, show_progress=False)  # fmt: skip
    whole = train(data, tmp_path / "whole", max_steps=5, **opts)
    train(data, tmp_path / "part", max_steps=2, **opts)
    part = train(data, tmp_path / "part", max_steps=5, resume=True, show_progress=False)
    assert losses(part) == losses(whole) and len(losses(whole)) == 5  # dropout on: RNG restored too
    with pytest.raises(ExpertlmError, match="training data differ"):
        train(write_jsonl(tmp_path / "other.jsonl", SFT_ROWS * 5), tmp_path / "part",
              max_steps=6, resume=True, show_progress=False)  # fmt: skip


def test_sft_holds_out_examples_for_validation(model_dir, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", SFT_ROWS * 10)
    run = train(data, tmp_path / "run", objective="sft", init=str(model_dir), max_steps=2,
                micro_batch=4, val_frac=0.2, batch_examples=8, show_progress=False)  # fmt: skip
    info = json.loads((run / "run.json").read_text())
    assert info["grad_accum"] == 2 and info["batch_examples"] == 8
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert math.isfinite(last["val_loss"]) and last["tokens"] > 0


def test_user_errors_are_one_line(model_dir, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", SFT_ROWS)
    proc = run_cli("train", data, "--objective", "sft", "--out", tmp_path / "r")
    assert proc.returncode == 2 and "--objective sft needs --init" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    with pytest.raises(ExpertlmError, match="a folder; --objective sft reads a JSONL file"):
        train(model_dir.parent, tmp_path / "r", objective="sft", init=str(model_dir))
    with pytest.raises(ExpertlmError, match="--beta not used by --objective sft"):
        train(data, tmp_path / "r", objective="sft", init=str(model_dir), beta=0.1)
    with pytest.raises(ExpertlmError, match="a file; --objective clm trains on a shards folder"):
        train(data, tmp_path / "r", preset="gpt2-tiny")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(SFT_ROWS[0]) + "\n" + json.dumps({"text": "x"}) + "\n")
    with pytest.raises(ExpertlmError, match=r"bad.jsonl:2: expected a 'messages' list"):
        train(bad, tmp_path / "r", objective="sft", init=str(model_dir), show_progress=False)
