"""experiment/compute.py: compute-effectiveness interpolated in log FLOPs on hand-made curves,
"not reached", and forgetting."""

from __future__ import annotations

import math

import pytest

from expertlm.experiment.compute import effectiveness, flops_to_reach, forgetting

FLOPS = [0.0, 10.0, 100.0, 1000.0]
LOSS = [5.0, 4.0, 3.0, 2.0]


def test_the_crossing_is_interpolated_in_log_flops_between_checkpoints():
    # halfway in loss between 100 and 1000 FLOPs: the geometric mean
    assert flops_to_reach(FLOPS, LOSS, 2.5) == pytest.approx(math.sqrt(100 * 1000))
    # a quarter of the way from 10 to 100: 10 ** 1.25
    assert flops_to_reach(FLOPS, LOSS, 3.75) == pytest.approx(10**1.25)
    # exactly at a checkpoint
    assert flops_to_reach(FLOPS, LOSS, 3.0) == pytest.approx(100.0)


def test_from_step_0_the_interpolation_is_linear_in_flops():
    assert flops_to_reach(FLOPS, LOSS, 4.5) == pytest.approx(5.0)
    assert flops_to_reach(FLOPS, LOSS, 5.0) == 0.0  # the base is there already


def test_a_curve_that_never_gets_there_is_not_reached():
    assert flops_to_reach(FLOPS, LOSS, 1.5) is None
    # the first crossing counts, not a later dip
    assert flops_to_reach([0, 10, 100, 1000], [5, 3, 4, 2], 3.5) == pytest.approx(7.5)


def test_effectiveness_is_the_unfiltered_flops_over_the_filtered_ones():
    filtered = {"flops": [0.0, 50.0, 100.0], "loss": [5.0, 3.0, 2.5]}
    e = effectiveness(filtered, {"flops": FLOPS, "loss": LOSS})
    assert e["reached"] and e["target_loss"] == 2.5
    assert e["ratio"] == pytest.approx(math.sqrt(100 * 1000) / 100)
    # the other way round: the filtered run reaches the unfiltered final loss (2.0) never
    assert e["filtered_flops_to_reach"] is None and e["reverse_ratio"] is None
    # ... and here at 10 ** 1.5 FLOPs (halfway in loss between 10 and 100, in log FLOPs)
    back = effectiveness({"flops": [0.0, 10.0, 100.0], "loss": [5.0, 4.0, 1.0]},
                         {"flops": [0.0, 100.0], "loss": [5.0, 2.5]})  # fmt: skip
    assert back["filtered_flops_to_reach"] == pytest.approx(10**1.5)
    assert back["reverse_ratio"] == pytest.approx(100 / 10**1.5)
    never = effectiveness({"flops": [0.0, 100.0], "loss": [5.0, 1.0]}, {"flops": FLOPS, "loss": LOSS})
    assert not never["reached"] and never["ratio"] is None
    assert never["ratio_lower_bound"] == pytest.approx(1000 / 100)


def test_forgetting_is_the_change_in_general_bits_per_byte_from_the_base():
    f = forgetting({"flops": [0.0, 10.0, 20.0], "loss": [1.25, 1.5, 1.75]})
    assert f == {"base_bpb": 1.25, "final_bpb": 1.75, "change": 0.5}


@pytest.mark.parametrize("tied", [True, False])
def test_flops_per_token_counts_an_output_projection_once_tied_or_not(tied):
    """The one FLOP estimate (models.flops_per_token, which run.json and the checkpoint tables
    use): 6 N + 12 L d T, N every matmul weight, the output projection once either way."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from expertlm.models import flops_per_token

    cfg = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, tie_word_embeddings=tied)  # fmt: skip
    model = LlamaForCausalLM(cfg)
    # every weight but the input embedding's lookup table; a tied lm_head is that same
    # matrix under its own name (remove_duplicate=False), and a matmul of its own
    n = sum(p.numel() for name, p in model.named_parameters(remove_duplicate=False)
            if "embed_tokens" not in name)  # fmt: skip
    assert flops_per_token(model, 8) == 6 * n + 12 * 2 * 16 * 8
