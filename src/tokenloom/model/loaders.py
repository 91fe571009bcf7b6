"""Loaders: a GGUF file, a Hugging Face folder, or our own checkpoint folder.

Each returns a `Transformer` with its weights in place and the matching `Tokenizer`.
Weights are renamed into our layout (fused QKV, fused gate/up) while loading; the
module is built on the meta device and takes the tensors with `assign=True`, so no
weight is allocated twice.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tokenloom.errors import CorruptModelFile, InvalidArgument
from tokenloom.model.config import ModelConfig
from tokenloom.model import blocks as block_kernels, quant
from tokenloom.model.fused_decode import FusedDecoder
from tokenloom.model.gguf import GGUFFile
from tokenloom.model.quant import Blocks
from tokenloom.model.transformer import Transformer
from tokenloom.tokenizer import SpecialTokens, Tokenizer, byte_level_bpe_from_gguf

PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}
NATIVE = "native"  # a GGUF file's quantized blocks, computed on as stored (model/quant.py)
AUTO = "auto"  # native for a GGUF file, float32 for everything else
ALL_PRECISIONS = (AUTO, *PRECISIONS, NATIVE)


def dtype_of(precision: str) -> torch.dtype:
    if precision == AUTO:
        return torch.float32
    if precision == NATIVE:
        raise InvalidArgument(
            "precision 'native' computes on a GGUF file's quantized weights; this model is not a GGUF file: "
            "use 'float32' or 'bfloat16'")
    if precision not in PRECISIONS:
        raise InvalidArgument(f"precision must be one of {list(ALL_PRECISIONS)}, got {precision!r}")
    return PRECISIONS[precision]


def build(config: ModelConfig, state: dict[str, torch.Tensor], precision: str = "float32") -> Transformer:
    """A model from a state dict in our naming, cast to `precision`."""
    dtype = dtype_of(precision)
    with torch.device("meta"):
        model = Transformer(config)
    state = {name: tensor.to(dtype) for name, tensor in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise CorruptModelFile(f"weights do not match the config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.setup_rope()
    model.pack_for_inference()
    model.precision = "float32" if dtype == torch.float32 else "bfloat16"
    return model.eval()


# -- GGUF -------------------------------------------------------------------
def unpermute_rope(w: torch.Tensor, heads: int) -> torch.Tensor:
    """Undo llama.cpp's q/k row order (interleaved pairs) back to the halves layout.

    llama.cpp's converter stores each head's rows as (d/2, 2) pairs; we rotate
    (x_i, x_{i+d/2}), so rows go back to (2, d/2) per head.
    """
    out = w.shape[0]
    return w.reshape(heads, out // heads // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def gguf_config(f: GGUFFile) -> ModelConfig:
    arch = f.field("general.architecture")
    if arch != "llama":
        raise InvalidArgument(f"{f.path}: GGUF architecture {arch!r} is not supported; supported: 'llama'")
    get = lambda key, default=None: f.field(f"{arch}.{key}", default)  # noqa: E731
    vocab = get("vocab_size") or len(f.string_array("tokenizer.ggml.tokens"))
    return ModelConfig(
        vocab_size=int(vocab),
        dim=int(get("embedding_length")),
        n_layers=int(get("block_count")),
        n_heads=int(get("attention.head_count")),
        n_kv_heads=int(get("attention.head_count_kv", get("attention.head_count"))),
        hidden_dim=int(get("feed_forward_length")),
        max_seq_len=int(get("context_length", 2048)),
        norm_eps=float(get("attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta=float(get("rope.freq_base", 10000.0)),
        tie_embeddings="output.weight" not in f.tensors,
        arch="llama",
    )


def gguf_state(f: GGUFFile, config: ModelConfig, native: bool = False) -> dict[str, "torch.Tensor | Blocks"]:
    """Our names -> float32 tensors; with `native`, quantized matrices stay in their blocks."""
    get = f.blocks if native else f.tensor
    state = {"embed.weight": get("token_embd.weight"), "norm.weight": f.tensor("output_norm.weight")}
    if not config.tie_embeddings:
        state["head.weight"] = get("output.weight")
    for i in range(config.n_layers):
        b, p = f"blk.{i}.", f"blocks.{i}."
        q = _rows(get(b + "attn_q.weight"), lambda w: unpermute_rope(w, config.n_heads))
        k = _rows(get(b + "attn_k.weight"), lambda w: unpermute_rope(w, config.n_kv_heads))
        state[p + "attn.qkv.weight"] = Blocks.cat([q, k, get(b + "attn_v.weight")])
        state[p + "attn.out.weight"] = get(b + "attn_output.weight")
        state[p + "attn_norm.weight"] = f.tensor(b + "attn_norm.weight")
        state[p + "mlp_norm.weight"] = f.tensor(b + "ffn_norm.weight")
        state[p + "mlp.up.weight"] = Blocks.cat([get(b + "ffn_gate.weight"), get(b + "ffn_up.weight")])
        state[p + "mlp.down.weight"] = get(b + "ffn_down.weight")
    return state


def _has_native_blocks(f: GGUFFile) -> bool:
    return any(info.kind in quant.native_kinds() for info in f.tensors.values())


def _rows(weight, reorder):
    """Reorder a matrix's rows, whether it is a tensor or quantized blocks."""
    return weight.map_rows(reorder) if isinstance(weight, Blocks) else reorder(weight)


def build_native(config: ModelConfig, state: dict) -> Transformer:
    """A model whose quantized matrices compute on their blocks (see model/quant.py), the rest in bfloat16.

    Every quantized matrix -> `BlockLinear` on tokenloom's block kernels, where they can be
    built (model/blocks.py); else 4-bit blocks -> `Int4Linear` and Q8_0 -> `Q8Linear` (two
    4-bit planes) on PyTorch's int4 kernel. The embedding lookup gathers Q8_0 rows exactly;
    a tied output layer computes on the embedding's blocks. The residual stream and the
    norms stay float32.
    """
    if not quant.available():
        raise InvalidArgument("precision 'native' needs tokenloom's GGUF block kernels (a C compiler) or "
                              f"PyTorch's int4 CPU kernels, which torch {torch.__version__} lacks")
    with torch.device("meta"):
        model = Transformer(config)
    dense = {}
    for name, value in state.items():
        if not isinstance(value, Blocks):  # matrices in bfloat16; norms and embedding float32, as the residual
            dense[name] = value.to(torch.bfloat16) if value.dim() > 1 and name != "embed.weight" else value.float()
        elif name == "embed.weight":
            model.embed = quant.BlockEmbedding(value) if value.kind == "Q8_0" else _dense_embedding(value)
        else:
            model.set_submodule(name.removesuffix(".weight"), _native_linear(value))
    if config.tie_embeddings and model.head is None:
        embed = state["embed.weight"]
        model.head = _native_linear(embed) if isinstance(embed, Blocks) else None
    model.load_state_dict(dense, strict=False, assign=True)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise CorruptModelFile(f"weights do not match the config: missing {left[:5]}")
    model.setup_rope()
    model.pack_for_inference()
    model.precision = NATIVE
    model.fused_decoder = FusedDecoder.build(model)
    return model.eval()


def _native_linear(blocks: Blocks) -> torch.nn.Module:
    if block_kernels.available():
        return quant.BlockLinear(blocks)
    if blocks.kind == "Q8_0":
        return quant.Q8Linear(blocks)
    return quant.Int4Linear.from_blocks(blocks)


def _dense_embedding(blocks: Blocks) -> torch.nn.Embedding:
    return torch.nn.Embedding.from_pretrained(blocks.dequantize(), freeze=True)


def gguf_tokenizer(f: GGUFFile) -> Tokenizer:
    model = f.field("tokenizer.ggml.model")
    if model != "gpt2":
        raise InvalidArgument(f"{f.path}: tokenizer model {model!r} is not supported; supported: 'gpt2' (byte-level BPE)")
    tokens = f.string_array("tokenizer.ggml.tokens")
    backend = byte_level_bpe_from_gguf(
        tokens,
        f.string_array("tokenizer.ggml.merges"),
        f.int_array("tokenizer.ggml.token_type"),
        f.field("tokenizer.ggml.pre", "default"),
    )
    eos = f.field("tokenizer.ggml.eos_token_id")
    eot = f.field("tokenizer.ggml.eot_token_id")
    eos_ids = tuple(dict.fromkeys(int(i) for i in (eos, eot) if i is not None))
    template = f.field("tokenizer.chat_template")
    if template and "<|im_end|>" in template and "<|im_end|>" in tokens:
        # ChatML templates end each turn with <|im_end|>: a chat reply stops there.
        eos_ids = tuple(dict.fromkeys(eos_ids + (tokens.index("<|im_end|>"),)))
    special = SpecialTokens(
        bos_id=f.field("tokenizer.ggml.bos_token_id"),
        eos_ids=eos_ids,
        pad_id=f.field("tokenizer.ggml.padding_token_id"),
        add_bos=bool(f.field("tokenizer.ggml.add_bos_token", False)),
        chat_template=template,
    )
    return Tokenizer(backend, special)


def load_gguf(path: str | Path, precision: str = AUTO) -> tuple[Transformer, Tokenizer]:
    if precision not in ALL_PRECISIONS:
        dtype_of(precision)  # the error message
    f = GGUFFile(path)
    config = gguf_config(f)
    tokenizer = gguf_tokenizer(f)
    if precision == AUTO:
        precision = NATIVE if quant.available() and _has_native_blocks(f) else "float32"
    if precision == NATIVE:
        return build_native(config, gguf_state(f, config, native=True)), tokenizer
    return build(config, gguf_state(f, config), precision), tokenizer


# -- our own checkpoint folders ----------------------------------------------
CHECKPOINT_FORMAT = "tokenloom-checkpoint"


def save_checkpoint(folder: str | Path, model: Transformer, tokenizer: Tokenizer) -> None:
    """Weights (safetensors), config and tokenizer in one folder; loadable by `load_checkpoint`."""
    from safetensors.torch import save_file

    if getattr(model, "precision", "float32") == NATIVE:
        raise InvalidArgument(
            "a model loaded in native precision holds packed kernel weights and cannot be saved as a checkpoint; "
            "load it with precision='float32' (or 'bfloat16') to save or fine-tune it")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: t.detach().contiguous() for name, t in model.state_dict().items()}
    if model.config.tie_embeddings:
        state.pop("head.weight", None)
    save_file(state, str(folder / "model.safetensors"))
    config = {"format": CHECKPOINT_FORMAT, "model": model.config.to_dict()}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    tokenizer.save(folder)


def load_checkpoint(folder: str | Path, precision: str = AUTO) -> tuple[Transformer, Tokenizer]:
    from safetensors.torch import load_file

    folder = Path(folder)
    config = ModelConfig.from_dict(json.loads((folder / "config.json").read_text())["model"])
    state = load_file(str(folder / "model.safetensors"))
    return build(config, state, precision), Tokenizer.load(folder)


def is_checkpoint(folder: Path) -> bool:
    try:
        return json.loads((folder / "config.json").read_text()).get("format") == CHECKPOINT_FORMAT
    except (OSError, ValueError):
        return False
