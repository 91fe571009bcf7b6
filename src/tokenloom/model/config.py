"""`ModelConfig`: one dataclass that describes every decoder-only model we run.

Where the Llama and GPT-2 families differ, the config names a small part (the norm,
the MLP, the position scheme) instead of an architecture, so the transformer never
branches on a model name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from tokenloom.errors import InvalidArgument


@dataclass
class ModelConfig:
    vocab_size: int
    dim: int                      # model width (d_model)
    n_layers: int
    n_heads: int
    n_kv_heads: int               # < n_heads: grouped-query attention
    hidden_dim: int               # MLP inner width
    max_seq_len: int = 2048       # the context the model was trained for
    norm: str = "rmsnorm"         # "rmsnorm" | "layernorm"
    norm_eps: float = 1e-5
    mlp: str = "swiglu"           # "swiglu" | "gelu" (tanh approximation, as GPT-2)
    positions: str = "rope"       # "rope" | "learned"
    rope_theta: float = 10000.0
    bias: bool = False            # biases on attention and MLP projections
    tie_embeddings: bool = True   # the output layer reuses the token embedding
    dropout: float = 0.0
    arch: str = "llama"           # informative only: where the weights came from

    def __post_init__(self):
        choices = {"norm": ("rmsnorm", "layernorm"), "mlp": ("swiglu", "gelu"), "positions": ("rope", "learned")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise InvalidArgument(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "hidden_dim", "max_seq_len"):
            if int(getattr(self, name)) < 1:
                raise InvalidArgument(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.dim % self.n_heads:
            raise InvalidArgument(f"dim ({self.dim}) must be divisible by n_heads ({self.n_heads})")
        if self.n_heads % self.n_kv_heads:
            raise InvalidArgument(f"n_heads ({self.n_heads}) must be divisible by n_kv_heads ({self.n_kv_heads})")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
