"""`expertlm merge --config`: mergekit's YAML recipes give mergekit's output (mergekit itself
runs on the same recipe and tiny GPT-2 models), and what expertlm does not support is a
one-line error naming the key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from expertlm.errors import ExpertlmError
from expertlm.merge import merge
from expertlm.recipe import evaluate

from lm_fixtures import make_tokenizer, random_gpt2, save_model

N_LAYER = 6  # five gradient anchors over six layers: t falls between anchors
ATTN = [0, 0.5, 0.3, 0.7, 1]  # the seed paper's gradient SLERP (mergekit's example recipe)
MLP = [1, 0.5, 0.7, 0.3, 0]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A base and two fine-tuned-like models (base + small task vectors), and an unrelated one."""
    root = tmp_path_factory.mktemp("models")
    tok = make_tokenizer(root / "tok")
    base = random_gpt2(300, seed=0, n_layer=N_LAYER)
    out = {"base": save_model(base, tok, root / "base")}
    for i, name in enumerate(("a", "b")):
        m = random_gpt2(300, seed=0, n_layer=N_LAYER)
        g = torch.Generator().manual_seed(10 + i)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
        out[name] = save_model(m, tok, root / name)
    out["other"] = save_model(random_gpt2(300, seed=7, n_layer=N_LAYER), tok, root / "other")
    return out


def recipes(m: dict[str, Path]) -> dict[str, str]:
    grad_t = f"""
parameters:
  t:
    - filter: attn
      value: {ATTN}
    - filter: mlp
      value: {MLP}
    - value: 0.5
dtype: float32
"""
    return {
        "linear": f"""
merge_method: linear
models:
  - model: {m["a"]}
    parameters: {{weight: 0.7}}
  - model: {m["b"]}
    parameters:
      weight:
        - filter: mlp
          value: [0.1, 0.5, 2.0]
        - value: 0.3
dtype: float32
""",
        "linear_unnormalized": f"""
merge_method: linear
models:
  - model: {m["a"]}
    parameters: {{weight: 0.5}}
  - model: {m["b"]}
    parameters: {{weight: 0.25}}
parameters: {{normalize: false}}
dtype: float32
""",
        "slerp_gradient": f"""
slices:
  - sources:
      - model: {m["base"]}
        layer_range: [0, {N_LAYER}]
      - model: {m["other"]}
        layer_range: [0, {N_LAYER}]
merge_method: slerp
base_model: {m["base"]}
{grad_t}""",
        # the paper's recipe as written for Llama: on GPT-2, self_attn matches no tensor
        "slerp_self_attn": f"""
models:
  - model: {m["base"]}
  - model: {m["other"]}
merge_method: slerp
base_model: {m["base"]}
parameters:
  t:
    - filter: self_attn
      value: {ATTN}
    - filter: mlp
      value: {MLP}
    - value: 0.5
dtype: float32
""",
        "slerp_slices": f"""
slices:
  - sources:
      - model: {m["base"]}
        layer_range: [0, 3]
      - model: {m["other"]}
        layer_range: [3, 6]
  - sources:
      - model: {m["base"]}
        layer_range: [3, 6]
      - model: {m["other"]}
        layer_range: [0, 3]
    parameters:
      t: [0.9, 0.2]
merge_method: slerp
base_model: {m["base"]}
{grad_t}""",
        "ties": f"""
merge_method: ties
base_model: {m["base"]}
models:
  - model: {m["a"]}
    parameters: {{weight: 1.0, density: 0.5}}
  - model: {m["b"]}
    parameters:
      weight: 0.5
      density: [0.3, 0.9]
parameters: {{lambda: 0.8, int8_mask: true}}
dtype: float32
""",
        "ties_unnormalized": f"""
merge_method: ties
base_model: {m["base"]}
models:
  - model: {m["base"]}
  - model: {m["a"]}
    parameters: {{weight: 0.6, density: 0.7}}
  - model: {m["b"]}
    parameters: {{weight: 0.4, density: 0.2}}
parameters: {{normalize: false}}
dtype: float32
""",
        "task_arithmetic": f"""
merge_method: task_arithmetic
base_model: {m["base"]}
models:
  - model: {m["a"]}
    parameters: {{weight: 0.6}}
  - model: {m["b"]}
    parameters:
      weight:
        - filter: attn
          value: [1.0, -0.5]
        - value: 0.3
parameters: {{lambda: 1.2}}
dtype: float32
""",
        "task_arithmetic_normalized": f"""
merge_method: task_arithmetic
base_model: {m["base"]}
models:
  - model: {m["a"]}
    parameters: {{weight: 0.6}}
  - model: {m["b"]}
    parameters: {{weight: 0.9}}
parameters: {{normalize: true}}
dtype: float32
""",
    }


def mergekit_merge(text: str, out: Path) -> dict[str, torch.Tensor]:
    from mergekit.config import MergeConfiguration
    from mergekit.merge import MergeOptions, run_merge

    run_merge(MergeConfiguration.model_validate(yaml.safe_load(text)), str(out),
              MergeOptions(quiet=True))  # fmt: skip
    return {k: v for f in sorted(out.glob("*.safetensors")) for k, v in load_file(f).items()}


CASES = ["linear", "linear_unnormalized", "slerp_gradient", "slerp_self_attn", "slerp_slices",
         "ties", "ties_unnormalized", "task_arithmetic", "task_arithmetic_normalized"]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_a_recipe_gives_mergekits_output(case, models, tmp_path):
    text = recipes(models)[case]
    (tmp_path / "recipe.yml").write_text(text)
    theirs = mergekit_merge(text, tmp_path / "mergekit")
    ours_dir = merge(config=tmp_path / "recipe.yml", out=tmp_path / "ours", show_progress=False)
    ours = load_file(ours_dir / "model.safetensors")
    assert ours.keys() == theirs.keys()
    diff = max((ours[k] - theirs[k]).abs().max().item() for k in ours)
    assert diff < 1e-6, (case, diff)
    assert all(ours[k].dtype == theirs[k].dtype for k in ours)
    # the merge is not one of its inputs (the recipe did something)
    base = load_file(models["base"] / "model.safetensors")
    assert any(not torch.equal(ours[k], base[k]) for k in ours)
    recorded = json.loads((ours_dir / "merge.json").read_text())
    assert recorded["recipe"]["config"] == yaml.safe_load(text)
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(ours_dir)


def test_gradients_interpolate_across_layers_as_mergekit():
    from mergekit.config import evaluate_setting

    for t in [i / (N_LAYER - 1) for i in range(N_LAYER)] + [0.0, 1.0, 0.37]:
        for setting in (ATTN, MLP, [0.2], [{"filter": "mlp", "value": MLP}, {"value": 0.5}]):
            want = evaluate_setting("transformer.h.1.mlp.c_fc.weight",
                                    _conditions(setting), t, validate=float)  # fmt: skip
            assert evaluate("transformer.h.1.mlp.c_fc.weight", setting, t, float) == want
    # layer 2 of 6 (t = 0.4) between the anchors 0.5 (at 0.25) and 0.3 (at 0.5): 0.38
    assert evaluate("x.attn.y", {"filter": "attn", "value": ATTN}, 0.4, float) == pytest.approx(
        0.38
    )


def _conditions(setting):
    from mergekit.config import ConditionalParameter

    if isinstance(setting, list) and setting and isinstance(setting[0], dict):
        return [ConditionalParameter(**c) for c in setting]
    return setting


def test_a_slices_recipe_renumbers_the_layers(models, tmp_path):
    text = f"""
slices:
  - sources:
      - model: {models["base"]}
        layer_range: [4, 6]
      - model: {models["other"]}
        layer_range: [0, 2]
merge_method: slerp
base_model: {models["base"]}
parameters: {{t: 0.0}}
dtype: float32
"""
    (tmp_path / "r.yml").write_text(text)
    out = merge(config=tmp_path / "r.yml", out=tmp_path / "out", show_progress=False)
    assert json.loads((out / "config.json").read_text())["n_layer"] == 2
    ours, base = (
        load_file(out / "model.safetensors"),
        load_file(models["base"] / "model.safetensors"),
    )
    # t = 0 is the base: output layer 1 is the base's layer 5
    torch.testing.assert_close(ours["transformer.h.1.attn.c_attn.weight"],
                               base["transformer.h.5.attn.c_attn.weight"], rtol=0, atol=1e-7)  # fmt: skip
    assert "transformer.h.2.ln_1.weight" not in ours


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [({"modules": {}}, "key 'modules': not supported by expertlm merge"),
     ({"chat_template": "chatml"}, "key 'chat_template': not supported"),
     ({"merge_method": "dare_ties"}, "key 'merge_method': 'dare_ties' is not one of"),
     ({"parameters": {"t": 0.5}}, "key 'parameters.t': not supported"),
     ({"parameters": {"rescale": True}}, "key 'parameters.rescale': only false"),
     ({"models": [{"model": "M", "parameters": {"weight": 1, "epsilon": 0.1}}]},
      "key 'models[0].parameters.epsilon': not supported"),
     ({"dtype": "int4"}, "key 'dtype': 'int4' is not one of"),
     ({"models": [{"model": "M", "weights": 1}]}, "key 'models[0].weights': not supported")],
)  # fmt: skip
def test_unsupported_keys_are_one_line_errors_naming_the_key(edit, fragment, models, tmp_path):
    recipe = {"merge_method": "ties", "base_model": str(models["base"]),
              "models": [{"model": str(models["a"]), "parameters": {"weight": 1.0}}]} | edit  # fmt: skip
    if "models" in edit:
        recipe["models"] = [dict(m, model=str(models["a"])) for m in edit["models"]]
    (tmp_path / "r.yml").write_text(yaml.safe_dump(recipe))
    with pytest.raises(ExpertlmError, match=fragment.replace("[", r"\[").replace("(", r"\(")) as e:
        merge(config=tmp_path / "r.yml", out=tmp_path / "out", show_progress=False)
    assert "\n" not in str(e.value) and "r.yml" in str(e.value)


def test_missing_required_parameter_and_bad_yaml(models, tmp_path):
    (tmp_path / "r.yml").write_text(yaml.safe_dump({
        "merge_method": "task_arithmetic", "base_model": str(models["base"]),
        "models": [{"model": str(models["a"])}]}))  # fmt: skip
    with pytest.raises(ExpertlmError, match="parameter 'weight' is missing for"):
        merge(config=tmp_path / "r.yml", out=tmp_path / "out", show_progress=False)
    (tmp_path / "bad.yml").write_text("merge_method: linear\nmodels: [a, b\n")
    with pytest.raises(ExpertlmError, match=r"bad.yml:\d+: not valid YAML"):
        merge(config=tmp_path / "bad.yml", out=tmp_path / "out", show_progress=False)


def test_the_cli_merges_a_recipe_and_refuses_models_beside_it(models, tmp_path):
    (tmp_path / "r.yml").write_text(recipes(models)["slerp_gradient"])
    env = {"EXPERTLM_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "expertlm", "merge", *map(str, args)],
                              capture_output=True, text=True, env=env, timeout=300)  # fmt: skip

    ok = cli("--config", tmp_path / "r.yml", "--out", tmp_path / "out")
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "out" / "model.safetensors").is_file()
    bad = cli(models["a"], "--config", tmp_path / "r.yml", "--out", tmp_path / "o2")
    assert bad.returncode == 2 and "leave out MODELS" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    warned = cli("--config", tmp_path / "r.yml", "--out", tmp_path / "o3")
    assert "filter" not in warned.stderr  # attn and mlp match GPT-2's tensors
