"""`tokenloom train ...`: teacher-forced training from scratch or from a pretrained model.

Options left out take the preset's value (default preset: shakespeare-char-cpu, nanoGPT's
baby GPT on the packaged Tiny Shakespeare). Under `torchrun` the same command runs
data-parallel over all processes.
"""

from typing import Annotated, Optional

import typer

Int = Optional[int]
Float = Optional[float]
Str = Optional[str]


def train_command(
    data: Annotated[Str, typer.Option(help="Text file or folder of *.txt (default: the packaged Tiny Shakespeare).")] = None,
    out: Annotated[Str, typer.Option(help="Run folder: checkpoints (last, best), metrics.jsonl, loss.png.")] = None,
    preset: Annotated[Str, typer.Option(help="shakespeare-char-cpu | shakespeare-char | smollm2-shakespeare.")] = None,
    tokenizer: Annotated[Str, typer.Option(help="char | bpe:VOCAB (trained on the data).")] = None,
    arch: Annotated[Str, typer.Option(help="llama (RoPE, RMSNorm, SwiGLU) | gpt2 (nanoGPT's parts).")] = None,
    layers: Annotated[Int, typer.Option(help="Transformer blocks.")] = None,
    heads: Annotated[Int, typer.Option(help="Attention heads.")] = None,
    dim: Annotated[Int, typer.Option(help="Model width.")] = None,
    context: Annotated[Int, typer.Option(help="Tokens per training window.")] = None,
    steps: Annotated[Int, typer.Option(help="Optimizer steps.")] = None,
    batch_size: Annotated[Int, typer.Option(help="Windows per micro-batch, per process.")] = None,
    grad_accum: Annotated[Int, typer.Option(help="Micro-batches per step, over all processes.")] = None,
    lr: Annotated[Float, typer.Option(help="Peak learning rate.")] = None,
    min_lr: Annotated[Float, typer.Option(help="Learning rate at the end of the cosine decay.")] = None,
    warmup: Annotated[Int, typer.Option(help="Linear warm-up steps.")] = None,
    weight_decay: Annotated[Float, typer.Option(help="AdamW weight decay (matrices only).")] = None,
    dropout: Annotated[Float, typer.Option(help="Dropout probability.")] = None,
    eval_every: Annotated[Int, typer.Option(help="Steps between validation passes.")] = None,
    eval_batches: Annotated[Int, typer.Option(help="Validation micro-batches per pass.")] = None,
    checkpoint_every: Annotated[Int, typer.Option(help="Steps between checkpoints (default: every evaluation).")] = None,
    seed: Annotated[Int, typer.Option(help="Seed of the weights and the data order.")] = None,
    dtype: Annotated[Str, typer.Option(help="float32 | bfloat16 (autocast).")] = None,
    init: Annotated[Str, typer.Option(help="Fine-tune this pretrained model (name or path).")] = None,
    compile: Annotated[Optional[bool], typer.Option(
        "--compile/--no-compile",
        help="torch.compile the model (tens of seconds once, before step 0); default: the preset's choice.")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the run in --out from its last checkpoint; with none yet, start it.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Train a model with teacher forcing (from scratch, or fine-tune with --init)."""
    from tokenloom.training import build_config, resume_config, train

    options = dict(
        data=data, out=out, tokenizer=tokenizer, arch=arch, layers=layers, heads=heads, dim=dim, context=context,
        steps=steps, batch_size=batch_size, grad_accum=grad_accum, lr=lr, min_lr=min_lr, warmup=warmup,
        weight_decay=weight_decay, dropout=dropout, eval_every=eval_every, eval_batches=eval_batches,
        checkpoint_every=checkpoint_every, seed=seed, dtype=dtype, init=init, compile=compile,
        )
    if resume:
        config = resume_config(out or build_config(preset).out, options, preset)
    else:
        config = build_config(preset, **options)
    result = train(config, resume=resume, show_progress=not quiet)
    if result.is_main:
        typer.echo(
            f"{result.step} steps: val loss {result.val_loss:.4f} (best {result.best_val_loss:.4f})"
            f"{f', compiled in {result.compile_s:.0f} s' if result.compile_s else ''}; "
            f"model in {result.out / 'last'}; try: tokenloom generate --model {result.out / 'last'}"
        )
