"""Hugging Face folders: `config.json`, `*.safetensors`, `tokenizer.json`, for Llama and GPT-2 models."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tokenloom.errors import CorruptModelFile, InvalidArgument
from tokenloom.model.config import ModelConfig
from tokenloom.model.loaders import build
from tokenloom.model.transformer import Transformer
from tokenloom.tokenizer import SpecialTokens, Tokenizer


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as error:
        raise CorruptModelFile(f"{path} is not valid JSON: {error}") from None


def hf_config(raw: dict) -> ModelConfig:
    kind = raw.get("model_type")
    if kind == "llama":
        heads = raw["num_attention_heads"]
        return ModelConfig(
            vocab_size=raw["vocab_size"], dim=raw["hidden_size"], n_layers=raw["num_hidden_layers"],
            n_heads=heads, n_kv_heads=raw.get("num_key_value_heads") or heads,
            hidden_dim=raw["intermediate_size"], max_seq_len=raw.get("max_position_embeddings", 2048),
            norm_eps=raw.get("rms_norm_eps", 1e-6), rope_theta=raw.get("rope_theta", 10000.0),
            bias=bool(raw.get("attention_bias", False)), tie_embeddings=bool(raw.get("tie_word_embeddings", False)),
            arch="llama",
        )
    if kind == "gpt2":
        dim = raw["n_embd"]
        return ModelConfig(
            vocab_size=raw["vocab_size"], dim=dim, n_layers=raw["n_layer"], n_heads=raw["n_head"],
            n_kv_heads=raw["n_head"], hidden_dim=raw.get("n_inner") or 4 * dim, max_seq_len=raw["n_positions"],
            norm="layernorm", norm_eps=raw.get("layer_norm_epsilon", 1e-5), mlp="gelu", positions="learned",
            bias=True, tie_embeddings=True, arch="gpt2",
        )
    raise InvalidArgument(f"model_type {kind!r} is not supported; supported: 'llama', 'gpt2'")


def _llama_state(w: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    get = lambda name: w[name] if name in w else w[name.removeprefix("model.")]  # noqa: E731
    state = {"embed.weight": get("model.embed_tokens.weight"), "norm.weight": get("model.norm.weight")}
    if not config.tie_embeddings:
        state["head.weight"] = w["lm_head.weight"]
    for i in range(config.n_layers):
        h, p = f"model.layers.{i}.", f"blocks.{i}."
        for part in ("weight", "bias") if config.bias else ("weight",):
            qkv = [get(f"{h}self_attn.{x}_proj.{part}") for x in "qkv"]
            state[p + f"attn.qkv.{part}"] = torch.cat(qkv)
            state[p + f"attn.out.{part}"] = get(f"{h}self_attn.o_proj.{part}")
        state[p + "mlp.up.weight"] = torch.cat([get(h + "mlp.gate_proj.weight"), get(h + "mlp.up_proj.weight")])
        state[p + "mlp.down.weight"] = get(h + "mlp.down_proj.weight")
        state[p + "attn_norm.weight"] = get(h + "input_layernorm.weight")
        state[p + "mlp_norm.weight"] = get(h + "post_attention_layernorm.weight")
    return state


def _gpt2_state(w: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    get = lambda name: w[name] if name in w else w["transformer." + name]  # noqa: E731
    state = {"embed.weight": get("wte.weight"), "pos_embed.weight": get("wpe.weight"),
             "norm.weight": get("ln_f.weight"), "norm.bias": get("ln_f.bias")}
    # GPT-2 stores its projections as Conv1D, (in, out): transpose to (out, in).
    pairs = {"attn.c_attn": "attn.qkv", "attn.c_proj": "attn.out", "mlp.c_fc": "mlp.up", "mlp.c_proj": "mlp.down"}
    for i in range(config.n_layers):
        h, p = f"h.{i}.", f"blocks.{i}."
        for theirs, ours in pairs.items():
            state[p + ours + ".weight"] = get(h + theirs + ".weight").t().contiguous()
            state[p + ours + ".bias"] = get(h + theirs + ".bias")
        for theirs, ours in {"ln_1": "attn_norm", "ln_2": "mlp_norm"}.items():
            state[p + ours + ".weight"], state[p + ours + ".bias"] = get(h + theirs + ".weight"), get(h + theirs + ".bias")
    return state


def hf_tokenizer(folder: Path, raw_config: dict) -> Tokenizer:
    from tokenizers import Tokenizer as HFTokenizer

    path = folder / "tokenizer.json"
    if not path.exists():
        raise CorruptModelFile(f"{folder} has no tokenizer.json (a Hugging Face folder needs one)")
    backend = HFTokenizer.from_file(str(path))
    tok_config = _read_json(folder / "tokenizer_config.json")
    gen_config = _read_json(folder / "generation_config.json")

    def token_id(value):
        if isinstance(value, dict):
            value = value.get("content")
        return backend.token_to_id(value) if isinstance(value, str) else None

    eos = gen_config.get("eos_token_id", raw_config.get("eos_token_id"))
    eos_ids = tuple(eos) if isinstance(eos, list) else ((eos,) if eos is not None else ())
    if not eos_ids and token_id(tok_config.get("eos_token")) is not None:
        eos_ids = (token_id(tok_config.get("eos_token")),)
    bos = raw_config.get("bos_token_id", token_id(tok_config.get("bos_token")))
    special = SpecialTokens(
        bos_id=bos, eos_ids=tuple(int(i) for i in eos_ids),
        pad_id=raw_config.get("pad_token_id"),
        add_bos=bool(tok_config.get("add_bos_token", False)),
        chat_template=tok_config.get("chat_template"),
    )
    return Tokenizer(backend, special)


def load_hf(folder: str | Path, precision: str = "auto") -> tuple[Transformer, Tokenizer]:
    from safetensors.torch import load_file

    folder = Path(folder)
    raw = _read_json(folder / "config.json")
    config = hf_config(raw)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CorruptModelFile(f"{folder} has no *.safetensors weights")
    weights: dict[str, torch.Tensor] = {}
    for file in files:
        weights.update(load_file(str(file)))
    convert = _llama_state if config.arch == "llama" else _gpt2_state
    try:
        state = convert(weights, config)
    except KeyError as error:
        raise CorruptModelFile(f"{folder}: weight {error} is missing for a {config.arch} model") from None
    return build(config, state, precision), hf_tokenizer(folder, raw)
