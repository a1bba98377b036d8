"""LoRA continued pretraining: only the adapters train and are saved, an interrupted run resumes
to the same losses, and the merged export computes what base + adapters compute."""

from __future__ import annotations

import importlib
import json
import random
import shutil
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from expertlm.cli import app
from expertlm.config import TrainConfig
from expertlm.errors import ExpertlmError
from expertlm.io import sha256_file
from expertlm.lora import export, load_run
from expertlm.models import build_model, gpt2_config
from expertlm.shards import data_prepare, read_meta
from expertlm.tokenizer import tokenizer_train
from expertlm.train import train

from lm_fixtures import write_corpus

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """Shards of a small repetitive literature, and a pretrained (random) tiny GPT-2 with the
    shards' tokenizer as the --init model."""
    root = tmp_path_factory.mktemp("lora")
    rng = random.Random(0)
    subjects = ["Dopamine", "Serotonin", "The hippocampus", "Cortical neurons"]
    verbs = ["increased", "decreased", "modulated", "impaired"]
    objects = ["memory", "firing rates", "plasticity", "attention"]
    docs = [" ".join(f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}."
                     for _ in range(10)) for _ in range(120)]  # fmt: skip
    write_corpus(root / "corpus", docs[:108], docs[108:])
    tok = tokenizer_train(root / "corpus", root / "tok", vocab_size=300, show_progress=False)
    shards = data_prepare(root / "corpus", root / "shards", tokenizer=tok, show_progress=False)
    meta = read_meta(shards)
    base = root / "base"
    build_model(
        gpt2_config("gpt2-tiny", meta["vocab_size"], meta["eot_id"]), seed=1
    ).save_pretrained(base)
    for f in (shards / "tokenizer").iterdir():
        shutil.copy2(f, base / f.name)
    return {"shards": shards, "base": base}


def opts(world, **kw) -> dict:
    return {"init": str(world["base"]), "lora": {"r": 4, "alpha": 8, "dropout": 0.1},
            "context": 32, "micro_batch": 4, "lr": 3e-3, "show_progress": False} | kw  # fmt: skip


def losses(run: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows}


def test_only_the_adapters_train_and_the_checkpoints_hold_only_them(world, tmp_path):
    base_sha = sha256_file(world["base"] / "model.safetensors")
    run = train(world["shards"], tmp_path / "run", **opts(world), max_steps=12, ckpt_every_steps=6,
                val_every_steps=6, log_every_steps=1)  # fmt: skip
    # GPT-2 defaults: c_attn, attn.c_proj, c_fc, mlp.c_proj in each of 2 layers, A and B each
    for folder in (
        run,
        run / "checkpoints" / "step-00000006",
        run / "checkpoints" / "step-00000012",
    ):
        assert not (folder / "model.safetensors").exists() and not (folder / "config.json").exists()
        adapters = load_file(folder / "adapter_model.safetensors")
        assert len(adapters) == 2 * 4 * 2 and all(
            ".lora_A." in k or ".lora_B." in k for k in adapters
        )
    assert (run / "best" / "adapter_model.safetensors").is_file()
    optim = torch.load(run / "checkpoints" / "step-00000012" / "trainer_state" / "optimizer.pt",
                       weights_only=True)  # fmt: skip
    assert optim["state"] and all("lora_" in name for name in optim["state"])
    info = json.loads((run / "run.json").read_text())
    assert info["lora"]["trainable_parameters"] == sum(v.numel() for v in adapters.values())
    assert info["lora"]["base"] == {
        "path": str(world["base"].resolve()),
        "weights_sha256": base_sha,
    }
    assert json.loads((run / "base.json").read_text()) == info["lora"]["base"]
    # the base is untouched and is what the trained model computes on, B is no longer zero
    assert sha256_file(world["base"] / "model.safetensors") == base_sha
    model = load_run(run)
    base_weights = load_file(world["base"] / "model.safetensors")
    layer = model.base_model.model.transformer.h[0].attn.c_attn
    assert torch.equal(layer.base_layer.weight, base_weights["transformer.h.0.attn.c_attn.weight"])
    assert layer.lora_B["default"].weight.abs().sum() > 0
    first, last = losses(run)[1], losses(run)[12]
    assert last < first


def test_an_interrupted_lora_run_resumes_to_the_same_losses(world, tmp_path, monkeypatch):
    train_mod = importlib.import_module("expertlm.train")

    common = opts(world) | {"max_steps": 8, "ckpt_every_steps": 4, "log_every_steps": 1}
    whole = train(world["shards"], tmp_path / "whole", **common)

    real, calls = train_mod.train_step, []

    def dies_at_step_6(*args, **kwargs):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt  # after the step-4 checkpoint, mid-way to step 8
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "train_step", dies_at_step_6)
    with pytest.raises(KeyboardInterrupt):
        train(world["shards"], tmp_path / "killed", **common)
    monkeypatch.setattr(train_mod, "train_step", real)
    assert not (tmp_path / "killed" / "run.json").exists()
    resumed = train(world["shards"], tmp_path / "killed", resume=True, **common)
    assert sorted(losses(resumed)) == list(range(1, 9))
    assert losses(resumed) == losses(whole)  # exact: weights, optimizer, dropout RNG restored
    assert torch.equal(
        load_file(resumed / "adapter_model.safetensors")["base_model.model.transformer.h.1.mlp.c_fc.lora_B.weight"],
        load_file(whole / "adapter_model.safetensors")["base_model.model.transformer.h.1.mlp.c_fc.lora_B.weight"],
    )  # fmt: skip


def test_merged_export_computes_what_base_plus_adapters_compute(world, tmp_path):
    from transformers import AutoModelForCausalLM

    from expertlm.eval.evaluate import eval_bench

    run = train(world["shards"], tmp_path / "run", **opts(world), max_steps=6)
    out = export(run, tmp_path / "merged", merge_lora=True)
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    assert merged.lm_head.weight.data_ptr() == merged.transformer.wte.weight.data_ptr()
    assert not any("lora" in k for k in load_file(out / "model.safetensors"))
    ids = torch.randint(
        0,
        read_meta(world["shards"])["vocab_size"],
        (3, 32),
        generator=torch.Generator().manual_seed(0),
    )
    with torch.no_grad():
        want = load_run(run)(input_ids=ids).logits
        got = merged(input_ids=ids).logits
    assert (got - want).abs().max() < 1e-5
    assert not torch.allclose(
        want, AutoModelForCausalLM.from_pretrained(world["base"])(input_ids=ids).logits
    )
    record = json.loads((out / "export.json").read_text())
    assert record["merge_lora"] and record["lora"]["r"] == 4
    assert record["weights_sha256"] == sha256_file(out / "model.safetensors")
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps({"id": str(i), "section": "s", "original": f"Dopamine increased memory {i}.",
                                         "altered": f"Dopamine decreased memory {i}."}) + "\n" for i in range(3)))  # fmt: skip
    summary = eval_bench(out, bench, tmp_path / "results", show_progress=False)
    assert summary["n"] == 3


def test_lora_is_refused_without_a_pretrained_model_and_with_bad_options(
    world, tmp_path, monkeypatch
):
    with pytest.raises(ExpertlmError, match="--lora needs --init"):
        TrainConfig.from_options({"lora": {}})
    assert TrainConfig(init="m", lora="r=16,alpha=32,dropout=0.1,targets=c_attn,c_proj").lora.model_dump() == {
        "r": 16, "alpha": 32.0, "dropout": 0.1, "targets": ["c_attn", "c_proj"]}  # fmt: skip
    with pytest.raises(ExpertlmError, match="option 'lora'.*KEY=VALUE"):
        TrainConfig.from_options({"init": "m", "lora": "16"})
    with pytest.raises(ExpertlmError, match="lora.rank.*unknown key"):
        TrainConfig.from_options({"init": "m", "lora": "rank=16"})
    with pytest.raises(ExpertlmError, match="targets=q_proj"):
        train(
            world["shards"],
            tmp_path / "t",
            **opts(world, lora={"targets": ["q_proj"]}),
            max_steps=1,
        )
    run = train(world["shards"], tmp_path / "run", **opts(world), max_steps=2)
    with pytest.raises(ExpertlmError, match="holds LoRA adapters.*--merge-lora"):
        export(run, tmp_path / "x")
    full = train(world["shards"], tmp_path / "full", init=str(world["base"]), context=32,
                 max_steps=1, show_progress=False)  # fmt: skip
    with pytest.raises(ExpertlmError, match="not a LoRA run"):
        export(full, tmp_path / "x", merge_lora=True)
    export(full, tmp_path / "plain")  # a full run exports as a copy of its model files
    assert sha256_file(tmp_path / "plain" / "model.safetensors") == sha256_file(
        full / "model.safetensors"
    )
    monkeypatch.setitem(sys.modules, "peft", None)  # as if not installed
    with pytest.raises(ExpertlmError, match=r'pip install -e "\.\[lora\]"'):
        train(world["shards"], tmp_path / "nopeft", **opts(world), max_steps=1)


def test_a_changed_base_is_refused(world, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(world["base"], base)
    run = train(world["shards"], tmp_path / "run", **opts(world, init=str(base)), max_steps=2,
                ckpt_every_steps=1)  # fmt: skip
    weights = load_file(base / "model.safetensors")
    weights["transformer.ln_f.bias"] += 1
    from safetensors.torch import save_file

    save_file(weights, base / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ExpertlmError, match="base model's weights changed"):
        export(run, tmp_path / "x", merge_lora=True)
    with pytest.raises(ExpertlmError, match="base model's weights changed"):
        train(world["shards"], run, resume=True, max_steps=3, show_progress=False)


def test_cli_lora_train_and_merge_export(world, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["train", str(world["shards"]), "--out", str(tmp_path / "run"), "--init",
                                 str(world["base"]), "--lora", "r=2,alpha=4,targets=c_attn,c_proj",
                                 "--context", "32", "--max-steps", "2", "--no-progress"])  # fmt: skip
    assert result.exit_code == 0, (result.output, result.exception)
    adapter_cfg = json.loads((tmp_path / "run" / "adapter_config.json").read_text())
    assert adapter_cfg["r"] == 2 and sorted(adapter_cfg["target_modules"]) == ["c_attn", "c_proj"]
    result = runner.invoke(
        app, ["export", "--merge-lora", str(tmp_path / "run"), "--out", str(tmp_path / "merged")]
    )
    assert result.exit_code == 0, (result.output, result.exception)
    assert (tmp_path / "merged" / "model.safetensors").is_file()


@pytest.mark.e2e
def test_lora_with_fsdp_on_two_processes_gives_the_losses_of_one(world, tmp_path, monkeypatch):
    import os
    import subprocess

    train_mod = importlib.import_module("expertlm.train")

    # FSDP computes the loss from the model's logits (its head is sharded); so does this run, so
    # that the two differ by the processes only (the fused head's own parity: test_train.py)
    monkeypatch.setattr(train_mod, "fused_head", lambda model, fsdp: None)
    one = train(world["shards"], tmp_path / "one", **opts(world, lora="r=4,alpha=8"), max_steps=3,
                batch_tokens=2 * 4 * 32, log_every_steps=1)  # fmt: skip
    env = dict(os.environ, EXPERTLM_NO_PROGRESS="1", OMP_NUM_THREADS="1")
    subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "expertlm", "train", str(world["shards"]), "--out", str(tmp_path / "fsdp"), "--fsdp",
         "--init", str(world["base"]), "--lora", "r=4,alpha=8", "--context", "32", "--micro-batch", "4",
         "--batch-tokens", str(2 * 4 * 32), "--max-steps", "3", "--lr", "3e-3", "--log-every-steps", "1"],
        check=True, env=env,
    )  # fmt: skip
    sharded = losses(tmp_path / "fsdp")
    assert sorted(sharded) == [1, 2, 3]
    for step, loss in losses(one).items():
        assert sharded[step] == pytest.approx(loss, abs=1e-5)
    a = load_file(one / "adapter_model.safetensors")
    b = load_file(tmp_path / "fsdp" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
