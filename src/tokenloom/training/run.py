"""`train(config)`: one training run from start (or from its last checkpoint) to the end.

Order of events per step: draw the windows, forward/backward each micro-batch, clip,
AdamW step; then, every `eval_every` steps and at the end, a validation pass and one
line in metrics.jsonl; every `checkpoint_interval` steps (and whenever the validation
loss is the best so far) an atomic checkpoint: `last`, and `best` when it improved. A
compiled model is compiled before step 0's evaluation (`Trainer.warm_up`), so the time per
step that the log reports never includes the compilation; the log states it separately.
"""

from __future__ import annotations

import time
from pathlib import Path

from tokenloom.errors import InvalidArgument
from tokenloom.training import checkpoint, distributed
from tokenloom.training.config import TrainConfig
from tokenloom.training.logbook import Logbook
from tokenloom.training.presets import build_config
from tokenloom.training.trainer import Trainer, TrainResult, build_model, load_pretrained, lr_at, prepare_run


def resume_config(out: str | Path, given: dict | None = None, preset: str | None = None) -> TrainConfig:
    """The saved config of the run in `out`; options in `given` must agree with it.

    A resumed run continues with exactly its own settings, so a differing option is an
    error rather than a silent change of schedule or data. When `out` holds no checkpoint
    yet (the run was killed before its first one, or never started), there is nothing to
    continue: the config is the one `preset` and `given` describe, as for a fresh run, so a
    job scheduler can rerun the same `--resume` command line from the start.
    """
    folder = checkpoint.latest(Path(out))
    if folder is None:
        return build_config(preset, **{**(given or {}), "out": str(out)})
    saved = TrainConfig.from_dict(checkpoint.read_config(folder))
    saved.out = str(out)
    differ = sorted(k for k, v in (given or {}).items() if v is not None and k != "out" and getattr(saved, k) != v)
    if differ:
        raise InvalidArgument(f"--resume continues {out} with its saved settings; these options differ: {differ}")
    return saved


def train(config: TrainConfig, resume: bool = False, show_progress: bool = True) -> TrainResult:
    """Run (or continue, with `resume`) the training described by `config`; see the module doc.

    With `resume` and no checkpoint in `config.out` yet, the run starts from step 0 and the
    log says so in one line.
    """
    ctx = distributed.setup()
    try:
        return _train(config, ctx, resume, show_progress)
    finally:
        distributed.teardown(ctx)


def _train(c: TrainConfig, ctx: distributed.Dist, resume: bool, show_progress: bool) -> TrainResult:
    out = Path(c.out)
    last = checkpoint.latest(out)
    fresh_start = resume and last is None  # killed before its first checkpoint: nothing to continue
    if not resume and last is not None:
        raise InvalidArgument(f"{out} already holds a run ({out}/last); continue it with --resume or pick another --out")
    if ctx.is_main and out.exists():
        checkpoint.prune(out)  # leftovers of a write that was killed
    model, tokenizer = load_pretrained(c) if c.init else (None, None)
    data = prepare_run(c, ctx, tokenizer)
    trainer = Trainer(c, ctx, data, model or build_model(c, data.tokenizer.vocab_size))
    if last is not None:
        trainer.restore(last)
    log = Logbook(out, c.steps, trainer.step, ctx.is_main, show_progress)
    if fresh_start:
        log.note(f"--resume: {out} holds no checkpoint yet; starting from step 0")
    compile_s = trainer.warm_up()
    with log:
        if trainer.compiled:
            log.note(f"compiled the model in {compile_s:.1f} s (not counted in ms/step)")
        if trainer.step == 0:
            evaluate_and_log(trainer, log, elapsed=0.0, steps=0, compile_s=compile_s if trainer.compiled else None)
        loop(trainer, log)
        log.finish()
    return TrainResult(out, trainer.step, log.entries[-1]["val_loss"], trainer.best_val_loss, log.entries, ctx.is_main,
                       compile_s)


def loop(trainer: Trainer, log: Logbook) -> None:
    c = trainer.c
    show_every = max(1, min(c.eval_every, 50) // 5)
    started, done = time.perf_counter(), 0
    while trainer.step < c.steps:
        loss = trainer.train_step()
        done += 1
        if trainer.step % show_every == 0:  # a host sync only every few steps
            speed = done * c.tokens_per_step / (time.perf_counter() - started)
            log.advance(loss.item(), speed)
        else:
            log.advance()
        evaluating = trainer.step % c.eval_every == 0 or trainer.step == c.steps
        improved = False
        if evaluating:
            improved = evaluate_and_log(trainer, log, time.perf_counter() - started, done)
        if improved or trainer.step % c.checkpoint_interval == 0 or trainer.step == c.steps:
            trainer.save(("last", "best") if improved else ("last",))
        if evaluating:
            started, done = time.perf_counter(), 0


def evaluate_and_log(trainer: Trainer, log: Logbook, elapsed: float, steps: int,
                     compile_s: float | None = None) -> bool:
    """Validation loss, one metrics entry; True when it is the best so far (the step-0 one excepted).

    compile_s: seconds spent compiling the model, recorded in the first entry of a compiled run.
    """
    val_loss = trainer.evaluate()
    ms = 1000.0 * elapsed / steps if steps else 0.0
    entry = {
        "step": trainer.step,
        "train_loss": trainer.take_train_loss(),
        "val_loss": val_loss,
        "lr": lr_at(max(0, trainer.step - 1), trainer.c),
        "ms_per_step": ms,
        "tokens_per_s": trainer.c.tokens_per_step * 1000.0 / ms if ms else 0.0,
    }
    if compile_s is not None:
        entry["compile_s"] = compile_s
    log.record(entry)
    improved = trainer.step > 0 and val_loss < trainer.best_val_loss
    if improved:
        trainer.best_val_loss = val_loss
    return improved
