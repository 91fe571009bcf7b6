"""TrainConfig validation, presets and the learning-rate schedule."""

import math
import re

import pytest

from tokenloom.errors import InvalidArgument
from tokenloom.training import PRESETS, TrainConfig, build_config, lr_at


def test_baby_gpt_preset_matches_nanogpt_reference():
    c = build_config("shakespeare-char-cpu")
    assert (c.layers, c.heads, c.dim, c.context, c.batch_size, c.steps) == (4, 4, 128, 64, 12, 2000)
    assert (c.lr, c.min_lr, c.warmup, c.weight_decay, c.beta2, c.grad_clip, c.dropout) == (
        1e-3, 1e-4, 100, 0.1, 0.99, 1.0, 0.0)
    assert c.tokenizer == "char" and c.data is None
    assert c.compile and not build_config("shakespeare-char-cpu", compile=False).compile
    assert not build_config("shakespeare-char").compile


def test_options_override_the_preset_and_none_means_not_given():
    c = build_config("shakespeare-char", steps=7, lr=None)
    assert c.steps == 7 and c.lr == PRESETS["shakespeare-char"]["lr"] and c.dim == 384


@pytest.mark.parametrize("options, fragment", [
    (dict(layers=0), "layers must be a positive integer"),
    (dict(lr=-1.0), "lr must be > 0"),
    (dict(min_lr=1.0), "min_lr"),
    (dict(dropout=1.0), "dropout must be in [0, 1)"),
    (dict(dtype="float16"), "dtype must be one of"),
    (dict(dim=130, heads=4), "divisible by heads"),
    (dict(tokenizer="bpe:abc"), "'char' or 'bpe:VOCAB'"),
    (dict(tokenizer="wordpiece"), "'char' or 'bpe:VOCAB'"),
])
def test_bad_settings_say_what_is_allowed(options, fragment):
    with pytest.raises(InvalidArgument, match=re.escape(fragment)):
        build_config(None, **options)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(InvalidArgument, match="shakespeare-char-cpu"):
        build_config("no-such-preset")


def test_init_refuses_shape_options():
    with pytest.raises(InvalidArgument, match="--init keeps"):
        build_config(None, init="smollm2-135m-instruct", layers=2)


def test_config_round_trips_through_a_dict():
    c = build_config(None, steps=5, tokenizer="bpe:300")
    assert TrainConfig.from_dict(c.to_dict()) == c and c.bpe_vocab == 300


def test_lr_warms_up_linearly_then_decays_by_cosine_to_the_floor():
    c = TrainConfig(steps=1000, warmup=100, lr=1e-3, min_lr=1e-4)
    assert lr_at(0, c) == pytest.approx(1e-5)
    assert lr_at(99, c) == pytest.approx(1e-3)
    assert lr_at(100, c) == pytest.approx(1e-3)
    middle = 100 + (1000 - 100) // 2
    assert lr_at(middle, c) == pytest.approx(1e-4 + 0.5 * (1e-3 - 1e-4))
    assert lr_at(1000, c) == pytest.approx(1e-4)
    lrs = [lr_at(s, c) for s in range(100, 1001)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert not any(math.isnan(x) for x in lrs)


def test_arch_picks_the_model_family_with_the_same_parameter_count():
    from tokenloom.model.transformer import Transformer
    from tokenloom.training.trainer import scratch_config

    llama = scratch_config(build_config(arch="llama"), vocab_size=65)
    gpt2 = scratch_config(build_config(arch="gpt2"), vocab_size=65)
    assert (llama.positions, llama.norm, llama.mlp) == ("rope", "rmsnorm", "swiglu")
    assert (gpt2.positions, gpt2.norm, gpt2.mlp) == ("learned", "layernorm", "gelu")
    sizes = [sum(p.numel() for p in Transformer(c).parameters()) for c in (llama, gpt2)]
    assert abs(sizes[0] - sizes[1]) / sizes[1] < 0.02


def test_unknown_arch_is_refused():
    with pytest.raises(InvalidArgument, match="arch must be one of"):
        build_config(arch="rwkv")
