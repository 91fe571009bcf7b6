"""Named training set-ups, and how command-line options combine with them.

`shakespeare-char-cpu` is nanoGPT's "baby GPT on a CPU": 4 layers, 4 heads, 128-dim,
context 64, batch 12, 2,000 steps, lr 1e-3 -> 1e-4 (cosine, 100 warm-up), no dropout,
AdamW β2 = 0.99, weight decay 0.1, clip 1.0. It trains through `torch.compile`
(compiled once before step 0, faster once inductor's cache holds the kernels; eagerly
where no C++ compiler is found, or with `--no-compile`): docs/performance.md
("Training against nanoGPT") has the measured trade-off.
`shakespeare-char` is
nanoGPT's GPU configuration (6 layers, 6 heads, 384-dim, context 256).
`smollm2-shakespeare` fine-tunes the pretrained SmolLM2-135M-Instruct on Tiny Shakespeare
with a small learning rate.
"""

from __future__ import annotations

from dataclasses import fields

from tokenloom.errors import InvalidArgument
from tokenloom.training.config import TrainConfig

PRESETS: dict[str, dict] = {
    "shakespeare-char-cpu": dict(
        tokenizer="char", layers=4, heads=4, dim=128, context=64, batch_size=12, grad_accum=1, steps=2000,
        lr=1e-3, min_lr=1e-4, warmup=100, weight_decay=0.1, beta2=0.99, grad_clip=1.0, dropout=0.0,
        eval_every=250, eval_batches=200, compile=True,
    ),
    "shakespeare-char": dict(
        tokenizer="char", layers=6, heads=6, dim=384, context=256, batch_size=64, grad_accum=1, steps=5000,
        lr=1e-3, min_lr=1e-4, warmup=100, weight_decay=0.1, beta2=0.99, grad_clip=1.0, dropout=0.2,
        eval_every=250, eval_batches=200,
    ),
    "smollm2-shakespeare": dict(
        init="smollm2-135m-instruct", context=256, batch_size=2, grad_accum=1, steps=12, lr=5e-5, min_lr=5e-6,
        warmup=2, weight_decay=0.0, beta2=0.95, grad_clip=1.0, dropout=0.0, eval_every=12, eval_batches=8,
    ),
}
DEFAULT_PRESET = "shakespeare-char-cpu"


def build_config(preset: str | None = None, **options) -> TrainConfig:
    """TrainConfig = dataclass defaults < the preset < the options given (None means "not given").

    >>> build_config("shakespeare-char-cpu", steps=100).steps
    100
    """
    name = preset or DEFAULT_PRESET
    if name not in PRESETS:
        raise InvalidArgument(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InvalidArgument(f"unknown training options {unknown}; known: {sorted(known)}")
    given = {key: value for key, value in options.items() if value is not None}
    if given.get("init") or PRESETS[name].get("init"):
        clash = sorted(set(given) & {"arch", "layers", "heads", "dim", "tokenizer"})
        if clash:
            raise InvalidArgument(f"--init keeps the pretrained model's shape and tokenizer; drop {clash}")
    return TrainConfig(**{**PRESETS[name], **given})
