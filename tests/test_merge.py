"""merge.py: each method against its closed form or a hand-worked example, SLERP's endpoints bit
for bit, the streaming safetensors writer, the recipe record, and clear errors for models that
cannot be merged."""

from __future__ import annotations

import importlib
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from expertlm.cli import app
from expertlm.errors import ExpertlmError
from expertlm.io import sha256_file
from expertlm.merge import SafetensorsWriter, merge, slerp_weights

from lm_fixtures import make_tokenizer, random_gpt2, save_model

merge_mod = importlib.import_module("expertlm.merge")  # the module (expertlm.merge: the function)


@pytest.fixture(scope="module")
def gpt2s(tmp_path_factory) -> dict[str, Path]:
    """Three tiny GPT-2 folders (tied embeddings) sharing one tokenizer, and one with 3 layers."""
    root = tmp_path_factory.mktemp("merge")
    tok = make_tokenizer(root / "tok")
    vocab = len(json.loads((tok / "tokenizer.json").read_text())["model"]["vocab"])
    folders = {
        name: save_model(random_gpt2(vocab, seed=seed), tok, root / name)
        for name, seed in (("a", 0), ("b", 1), ("base", 2))
    }
    folders["deep"] = save_model(random_gpt2(vocab, seed=3, n_layer=3), tok, root / "deep")
    folders["tok"] = tok
    return folders


def toy(folder: Path, tensors: dict[str, list], tokenizer: str = "{}") -> Path:
    """A model folder with hand-written tensors (merging needs no real architecture)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "toy", "hidden_size": 6}))
    (folder / "tokenizer.json").write_text(tokenizer)
    save_file({k: torch.tensor(v, dtype=torch.float32) for k, v in tensors.items()},
              folder / "model.safetensors")  # fmt: skip
    return folder


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def test_slerp_at_t0_and_t1_returns_the_parents_bit_for_bit(gpt2s, tmp_path):
    a, b = weights(gpt2s["a"]), weights(gpt2s["b"])
    for t, parent in ((0.0, a), (1.0, b)):
        out = merge([gpt2s["a"], gpt2s["b"]], tmp_path / f"t{t}", method="slerp", t=t,
                    show_progress=False)  # fmt: skip
        merged = weights(out)
        assert merged.keys() == parent.keys()
        for k in parent:  # int32 views: -0.0 and 0.0 differ here
            assert torch.equal(merged[k].view(torch.int32), parent[k].view(torch.int32)), k


def test_slerp_follows_the_arc_and_falls_back_to_linear_for_parallel_tensors(tmp_path, monkeypatch):
    # orth: v0 = (1, 0), v1 = (0, 2) are 90 degrees apart: at t = 0.5,
    #   s0 = s1 = sin(pi/4) / sin(pi/2) = sqrt(2)/2, so the result is (sqrt(2)/2, sqrt(2)).
    # par: v1 = 2 v0, |cos| = 1 > 0.9995: linear, 0.5 v0 + 0.5 v1 = (1.5, 3).
    # wide: 3 x 2, read one row per block: the angle must still be the whole tensor's.
    monkeypatch.setattr(merge_mod, "BLOCK_ELEMENTS", 1)
    w0 = [[1.0, 2.0], [0.5, -1.0], [3.0, 0.0]]
    w1 = [[-1.0, 1.0], [2.0, 0.5], [1.0, 1.0]]
    m0 = toy(tmp_path / "m0", {"orth": [1.0, 0.0], "par": [1.0, 2.0], "wide": w0})
    m1 = toy(tmp_path / "m1", {"orth": [0.0, 2.0], "par": [2.0, 4.0], "wide": w1})
    out = weights(merge([m0, m1], tmp_path / "out", method="slerp", t=0.5, show_progress=False))
    r = math.sqrt(2) / 2
    torch.testing.assert_close(out["orth"], torch.tensor([r, 2 * r]))
    torch.testing.assert_close(out["par"], torch.tensor([1.5, 3.0]))
    v0, v1 = torch.tensor(w0, dtype=torch.float64), torch.tensor(w1, dtype=torch.float64)
    theta = math.acos(float((v0 * v1).sum() / (v0.norm() * v1.norm())))
    want = (math.sin(theta / 2) * v0 + math.sin(theta / 2) * v1) / math.sin(theta)
    torch.testing.assert_close(out["wide"], want.float())
    assert slerp_weights(0.25, 0.9999, 1.0, 1.0) == (0.75, 0.25)  # near-parallel: linear


def test_linear_merge_is_the_weighted_average(gpt2s, tmp_path, monkeypatch):
    monkeypatch.setattr(merge_mod, "BLOCK_ELEMENTS", 100)  # several row blocks per matrix
    a, b, c = (weights(gpt2s[k]) for k in ("a", "b", "base"))
    out = merge([gpt2s["a"], gpt2s["b"], gpt2s["base"]], tmp_path / "lin", weights=[1, 2, 5],
                show_progress=False)  # fmt: skip
    merged = weights(out)
    for k in a:
        torch.testing.assert_close(merged[k], (1 * a[k] + 2 * b[k] + 5 * c[k]) / 8)
    recipe = json.loads((out / "merge.json").read_text())
    assert recipe["parameters"] == {"weights": [0.125, 0.25, 0.625]}
    even = weights(merge([gpt2s["a"], gpt2s["b"]], tmp_path / "even", show_progress=False))
    wte = "transformer.wte.weight"
    torch.testing.assert_close(even[wte], (a[wte] + b[wte]) / 2)  # default weights: equal


def test_ties_matches_the_worked_example(tmp_path, monkeypatch):
    # base b = (1, 2, 3, 4, 5, 6); task vectors tau_i = x_i - b; density 0.5 keeps k = 3 per tensor.
    #   tau1 = ( 3,   -2.5,  0.5,  2,  0.1, -0.2)  keeps  3, -2.5, 2   -> ( 3,   -2.5, 0,  2,   0, 0)
    #   tau2 = (-1,   -4,    0.2,  1.5, 0.6, 0.3)  keeps -4, 1.5, -1   -> (-1,   -4,   0,  1.5, 0, 0)
    #   tau3 = ( 1.5,  3,   -0.3, -5,  0.1,  0.2)  keeps -5, 3, 1.5    -> ( 1.5,  3,   0, -5,   0, 0)
    # elected sign of the sums (3.5, -3.5, 0, -1.5, 0, 0):          ( +,    -,    0,  -,   0, 0)
    # disjoint mean of the agreeing entries:
    #   entry 0: (3 + 1.5) / 2 = 2.25     entry 1: (-2.5 + -4) / 2 = -3.25
    #   entry 3: -5 (2 and 1.5 disagree)  entries 2, 4, 5: nothing kept -> 0
    # lambda 0.5: b + 0.5 * (2.25, -3.25, 0, -5, 0, 0) = (2.125, 0.375, 3, 1.5, 5, 6)
    # The same numbers as a 2 x 3 matrix read one row per block must give the same result
    # (the trim threshold is the whole tensor's).
    monkeypatch.setattr(merge_mod, "BLOCK_ELEMENTS", 1)
    b = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    taus = [
        [3, -2.5, 0.5, 2, 0.1, -0.2],
        [-1, -4, 0.2, 1.5, 0.6, 0.3],
        [1.5, 3, -0.3, -5, 0.1, 0.2],
    ]

    def folder(name, v):
        return toy(tmp_path / name, {"vec": v, "mat": [v[:3], v[3:]]})

    base = folder("base", b)
    models = [
        folder(f"m{i}", [x + y for x, y in zip(b, tau, strict=True)]) for i, tau in enumerate(taus)
    ]
    out = weights(merge(models, tmp_path / "out", method="ties", base=base, density=0.5, lam=0.5,
                        show_progress=False))  # fmt: skip
    want = torch.tensor([2.125, 0.375, 3.0, 1.5, 5.0, 6.0])
    torch.testing.assert_close(out["vec"], want, rtol=0, atol=1e-6)
    torch.testing.assert_close(out["mat"], want.reshape(2, 3), rtol=0, atol=1e-6)
    # weights (1, 1, 2): entry 0's sum 3 - 1 + 2 * 1.5 = 5 > 0; agreeing 3 (w 1) and 1.5 (w 2):
    # (1 * 3 + 2 * 1.5) / 3 = 2, so b0 + 0.5 * 2 = 2
    weighted = weights(merge(models, tmp_path / "w", method="ties", base=base, density=0.5, lam=0.5,
                             weights=[1, 1, 2], show_progress=False))  # fmt: skip
    assert weighted["vec"][0].item() == pytest.approx(2.0)


def test_task_arithmetic_is_base_plus_scaled_task_vectors(gpt2s, tmp_path):
    a, b, g = (weights(gpt2s[k]) for k in ("a", "b", "base"))
    out = merge([gpt2s["a"], gpt2s["b"]], tmp_path / "ta", method="task_arithmetic",
                base=gpt2s["base"], weights=[0.7, 0.3], lam=0.5, show_progress=False)  # fmt: skip
    merged = weights(out)
    for k in a:
        want = g[k] + 0.5 * (0.7 * (a[k] - g[k]) + 0.3 * (b[k] - g[k]))
        torch.testing.assert_close(merged[k], want)


def test_merged_folder_loads_with_tied_embeddings_and_records_the_recipe(gpt2s, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = merge([gpt2s["a"], gpt2s["b"]], tmp_path / "ties", method="ties", base=gpt2s["base"],
                show_progress=False)  # fmt: skip
    saved = weights(out)
    assert "lm_head.weight" not in saved  # tied to wte, as in the inputs
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    assert torch.equal(model.transformer.wte.weight, saved["transformer.wte.weight"])
    assert AutoTokenizer.from_pretrained(out).vocab_size > 0
    recipe = json.loads((out / "merge.json").read_text())
    assert recipe["method"] == "ties"
    assert recipe["parameters"] == {"weights": [1.0, 1.0], "density": 0.2, "lam": 1.0}
    assert [m["path"] for m in recipe["models"]] == [str(gpt2s["a"]), str(gpt2s["b"])]
    assert recipe["models"][1]["weights_sha256"] == sha256_file(gpt2s["b"] / "model.safetensors")
    assert recipe["base"]["weights_sha256"] == sha256_file(gpt2s["base"] / "model.safetensors")
    assert recipe["output"]["sha256"] == sha256_file(out / "model.safetensors")
    assert recipe["tokenizer_sha256"] == sha256_file(gpt2s["tok"] / "tokenizer.json")


def test_models_that_cannot_be_merged_are_clear_errors(gpt2s, tmp_path):
    a, b = gpt2s["a"], gpt2s["b"]
    with pytest.raises(
        ExpertlmError, match=rf"{gpt2s['deep']}: architecture differs.*n_layer 3 vs 2"
    ):
        merge([a, gpt2s["deep"]], tmp_path / "x", show_progress=False)
    other = tmp_path / "other-tok"
    shutil.copytree(b, other)
    (other / "tokenizer.json").write_text("{}")
    with pytest.raises(ExpertlmError, match=rf"{other}: tokenizer.json differs"):
        merge([a, other], tmp_path / "x", show_progress=False)
    m0 = toy(tmp_path / "m0", {"w": [1.0, 2.0]})
    m1 = toy(tmp_path / "m1", {"w": [1.0, 2.0, 3.0]})
    with pytest.raises(ExpertlmError, match=r"m1: tensors differ.*shape of w \[3\] vs \[2\]"):
        merge([m0, m1], tmp_path / "x", show_progress=False)
    with pytest.raises(ExpertlmError, match="exactly 2 models"):
        merge([a, b, a], tmp_path / "x", method="slerp", show_progress=False)
    with pytest.raises(ExpertlmError, match="needs --base"):
        merge([a, b], tmp_path / "x", method="ties", show_progress=False)
    with pytest.raises(ExpertlmError, match="--base is not used by --method linear"):
        merge([a, b], tmp_path / "x", base=a, show_progress=False)
    with pytest.raises(ExpertlmError, match="--t not used by --method linear"):
        merge([a, b], tmp_path / "x", t=0.3, show_progress=False)
    with pytest.raises(ExpertlmError, match="3 weights for 2 models"):
        merge([a, b], tmp_path / "x", weights=[1, 1, 1], show_progress=False)
    adapters = tmp_path / "lora-run"
    adapters.mkdir()
    (adapters / "adapter_config.json").write_text("{}")
    with pytest.raises(ExpertlmError, match="holds LoRA adapters.*export --merge-lora"):
        merge([a, adapters], tmp_path / "x", show_progress=False)
    with pytest.raises(ExpertlmError, match="no such model folder"):
        merge([a, tmp_path / "missing"], tmp_path / "x", show_progress=False)
    assert not (tmp_path / "x").exists()
    merge([m0, m0], tmp_path / "done", show_progress=False)
    with pytest.raises(ExpertlmError, match="already exists"):
        merge([m0, m0], tmp_path / "done", show_progress=False)


def test_streaming_writer_writes_what_safetensors_reads(tmp_path):
    tensors = {
        "bf16": torch.randn(5, 3).to(torch.bfloat16),
        "f16": torch.randn(4).to(torch.float16),
        "ids": torch.arange(6, dtype=torch.int64).reshape(2, 3),
        "mask": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
    }
    path = tmp_path / "w.safetensors"
    with SafetensorsWriter(path, [(k, v.dtype, tuple(v.shape)) for k, v in tensors.items()]) as w:
        for name, value in tensors.items():
            blocks = value.split(2) if value.dim() else [value]  # row blocks, in order
            for block in blocks:
                w.write(name, block.float() if value.is_floating_point() else block)
    loaded = load_file(path)
    for name, value in tensors.items():
        assert loaded[name].dtype == value.dtype and torch.equal(loaded[name], value), name
    assert w.sha256 == sha256_file(path)


def test_cli_merge_and_its_errors(gpt2s, tmp_path):
    result = CliRunner().invoke(app, ["merge", str(gpt2s["a"]), str(gpt2s["b"]), "--out",
                                      str(tmp_path / "cli"), "--method", "slerp", "--t", "0.3",
                                      "--no-progress"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "cli" / "merge.json").read_text())["parameters"] == {"t": 0.3}
    proc = subprocess.run(
        [sys.executable, "-m", "expertlm", "merge", str(gpt2s["a"]), str(gpt2s["b"]), "--out",
         str(tmp_path / "bad"), "--weights", "1,x"],
        capture_output=True, text=True, env={"EXPERTLM_NO_PROGRESS": "1", "PATH": ""},
    )  # fmt: skip
    assert (
        proc.returncode == 2 and "option --weights: expected comma-separated numbers" in proc.stderr
    )
    assert "Traceback" not in proc.stderr
