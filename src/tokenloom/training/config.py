"""`TrainConfig`: every setting of a training run, validated in one place.

A run folder keeps its config beside each checkpoint, so `--resume` continues with
exactly the settings it started with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from tokenloom.errors import InvalidArgument

ARCHS = ("llama", "gpt2")
DTYPES = ("float32", "bfloat16")


@dataclass
class TrainConfig:
    data: str | None = None        # a text file or a folder of *.txt; None: the packaged Tiny Shakespeare
    out: str = "runs/train"        # the run folder: data cache, checkpoints, metrics.jsonl, loss.png
    tokenizer: str = "char"        # "char" | "bpe:VOCAB" (ignored with `init`: the model's own)
    init: str | None = None        # start from a pretrained model (name or path) instead of random weights
    arch: str = "llama"            # "llama" (RoPE, RMSNorm, SwiGLU) | "gpt2" (nanoGPT's: learned positions, LayerNorm, GELU)
    layers: int = 4
    heads: int = 4
    dim: int = 128
    context: int = 64              # tokens per training window (T)
    steps: int = 2000              # optimizer steps
    batch_size: int = 12           # sequences per micro-batch on each process
    grad_accum: int = 1            # micro-batches per optimizer step, over all processes
    lr: float = 1e-3
    min_lr: float = 1e-4           # the floor of the cosine decay
    warmup: int = 100              # steps of linear warm-up
    weight_decay: float = 0.1      # on matrices only (embeddings and projections)
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0         # max global gradient norm; 0 turns clipping off
    dropout: float = 0.0
    eval_every: int = 250
    eval_batches: int = 200        # validation micro-batches per evaluation
    checkpoint_every: int = 0      # 0: checkpoint at every evaluation
    seed: int = 1337
    dtype: str = "float32"         # "float32" | "bfloat16" (autocast; weights stay float32)
    val_fraction: float = 0.1      # the last part of the text is the validation split
    compile: bool = False          # torch.compile the model (inductor; compiled once before step 0)

    def __post_init__(self):
        self._check_positive("layers", "heads", "dim", "context", "steps", "batch_size", "grad_accum",
                             "eval_every", "eval_batches")
        self._check_non_negative("warmup", "weight_decay", "grad_clip", "checkpoint_every", "min_lr", "seed")
        if not self.lr > 0:
            raise InvalidArgument(f"lr must be > 0, got {self.lr}")
        if self.min_lr > self.lr:
            raise InvalidArgument(f"min_lr ({self.min_lr}) must be at most lr ({self.lr})")
        if not 0.0 <= self.dropout < 1.0:
            raise InvalidArgument(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.val_fraction < 1.0:
            raise InvalidArgument(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if not (0.0 <= self.beta1 < 1.0 and 0.0 <= self.beta2 < 1.0):
            raise InvalidArgument(f"beta1 and beta2 must be in [0, 1), got {self.beta1}, {self.beta2}")
        if self.arch not in ARCHS:
            raise InvalidArgument(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.dtype not in DTYPES:
            raise InvalidArgument(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.dim % self.heads:
            raise InvalidArgument(f"dim ({self.dim}) must be divisible by heads ({self.heads})")
        self.bpe_vocab  # validates the tokenizer spec

    def _check_positive(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InvalidArgument(f"{name} must be a positive integer, got {value!r}")

    def _check_non_negative(self, *names: str) -> None:
        for name in names:
            if getattr(self, name) < 0:
                raise InvalidArgument(f"{name} must be >= 0, got {getattr(self, name)!r}")

    @property
    def bpe_vocab(self) -> int | None:
        """The BPE vocabulary size of "bpe:VOCAB", None for "char"."""
        if self.tokenizer == "char":
            return None
        kind, _, size = self.tokenizer.partition(":")
        if kind != "bpe" or not size.isdigit() or not 260 <= int(size) <= 65535:
            raise InvalidArgument(
                f"tokenizer must be 'char' or 'bpe:VOCAB' with 260 <= VOCAB <= 65535, got {self.tokenizer!r}"
            )
        return int(size)

    @property
    def checkpoint_interval(self) -> int:
        return self.checkpoint_every or self.eval_every

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.grad_accum * self.context

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidArgument(f"unknown training settings {unknown}; known: {sorted(known)}")
        return cls(**data)
