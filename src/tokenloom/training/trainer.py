"""The teacher-forcing loop: the model reads the real tokens x_<t and is scored on x_t.

    loss = -(1/T) Σ_t log P(x_t | x_<t)        inputs = ids[s : s+T], targets = ids[s+1 : s+T+1]

One optimizer step: `grad_accum` micro-batches of `batch_size` windows (shared out over
the processes of a distributed run), gradients clipped to `grad_clip`, AdamW with weight
decay on matrices only, learning rate from `lr_at` (linear warm-up, cosine to `min_lr`).

    result = train(build_config("shakespeare-char-cpu", out="runs/baby"))
    tokenloom.load("runs/baby/last").generate("ROMEO:")
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from tokenloom.errors import InvalidArgument
from tokenloom.model.config import ModelConfig
from tokenloom.model.transformer import Transformer
from tokenloom.tokenizer import Tokenizer
from tokenloom.training import checkpoint, distributed
from tokenloom.training.config import TrainConfig
from tokenloom.training.data import TokenData, WindowSampler, corpus_tokenizer, prepare_data, read_corpus, windows


@dataclass
class TrainResult:
    out: Path
    step: int
    val_loss: float
    best_val_loss: float
    metrics: list[dict]
    is_main: bool = True      # False on the other processes of a distributed run
    compile_s: float = 0.0    # seconds spent in torch.compile (0: eager)


def lr_at(step: int, c: TrainConfig) -> float:
    """Learning rate of optimizer step `step` (0-based): warm-up to lr, then cosine to min_lr.

    lr·(s+1)/warmup for s < warmup; then min_lr + ½(1 + cos(π·p))(lr - min_lr), p from 0 to 1.
    """
    if step < c.warmup:
        return c.lr * (step + 1) / c.warmup
    progress = min(1.0, (step - c.warmup) / max(1, c.steps - c.warmup))
    return c.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (c.lr - c.min_lr)


def make_optimizer(model: torch.nn.Module, c: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; weight decay on matrices (embeddings, projections), none on norms and biases."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": c.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=c.lr, betas=(c.beta1, c.beta2), fused=True)


def scratch_config(c: TrainConfig, vocab_size: int) -> ModelConfig:
    """The model a run trains from scratch, in one of two families of the same size.

    "gpt2" is nanoGPT's: LayerNorm, GELU MLP (4x), learned positions, tied head.
    "llama": RMSNorm, SwiGLU with hidden width 8/3·dim rounded up to a multiple of 8
    (the same parameter count as the 4x GELU MLP), rotary positions, tied head.
    """
    shared = dict(vocab_size=vocab_size, dim=c.dim, n_layers=c.layers, n_heads=c.heads, n_kv_heads=c.heads,
                  max_seq_len=c.context, bias=False, tie_embeddings=True, dropout=c.dropout, arch=c.arch)
    if c.arch == "gpt2":
        return ModelConfig(hidden_dim=4 * c.dim, norm="layernorm", mlp="gelu", positions="learned", **shared)
    hidden = -(-8 * c.dim // 3 // 8) * 8
    return ModelConfig(hidden_dim=hidden, norm="rmsnorm", mlp="swiglu", positions="rope", **shared)


def build_model(c: TrainConfig, vocab_size: int) -> Transformer:
    """A GPT-2 family model with random weights drawn from `c.seed`, in training mode."""
    model = Transformer(scratch_config(c, vocab_size))
    model.init_weights(c.seed)
    return model.train()


def compiler_available(device: torch.device) -> bool:
    """Whether inductor can build kernels here: on a CPU it needs a C++ compiler."""
    if device.type != "cpu":
        return True
    from tokenloom.private_apis import cpp_compiler_found

    return cpp_compiler_found()


def compile_for_training(model: Transformer, device: torch.device) -> torch.nn.Module:
    """`torch.compile` (inductor) of the training forward and backward; the model itself where it cannot.

    Compiling fuses the elementwise work (norms, rotary embedding, SwiGLU, the loss) into a
    few loops and removes the per-operation dispatch of eager mode, which is most of what a
    step of a model this small costs beyond its matrix products. The price is paid once, in
    `Trainer.warm_up`. The rotary tables are built here, before the first call: building
    them inside it would change the module between calls and cost a second compilation.
    """
    if not compiler_available(device):
        warnings.warn("torch.compile needs a C++ compiler on a CPU and none was found; training eagerly",
                      stacklevel=2)
        return model
    model.setup_rope()
    return torch.compile(model)


@contextlib.contextmanager
def deterministic_kernels():
    """Run the compiled forward and backward with kernels whose sums have a fixed order.

    Inductor writes the gradient of an embedding lookup (token ids, learned positions) as
    a loop over the batch that adds rows into the weight's gradient with atomic adds,
    split across threads: two threads adding into one row finish in either order, so the
    float sum, and with it a seeded run's weights, changed from run to run. Under
    `torch.use_deterministic_algorithms` inductor hands that scatter to PyTorch's own
    kernel, which adds in index order; the rest of the generated code is unchanged. The
    setting is PyTorch's global one, so it is set for the duration of our compiled calls
    only and put back after (warn_only: an operation with no deterministic version warns
    instead of stopping the run). Filling fresh buffers with NaN, which that mode also
    does by default, is left off: it guards against reading uninitialised memory, not
    against a changing order of sums.
    """
    from torch.utils import deterministic

    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              deterministic.fill_uninitialized_memory)
    torch.use_deterministic_algorithms(True, warn_only=True)
    deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        deterministic.fill_uninitialized_memory = before[2]


def load_pretrained(c: TrainConfig) -> tuple[Transformer, Tokenizer]:
    """The model `c.init` names (float32, every weight trainable) and its own tokenizer."""
    from tokenloom.model.registry import load_model

    model, tokenizer, _ = load_model(c.init, "float32")
    if c.context > model.config.max_seq_len:
        raise InvalidArgument(f"context {c.context} exceeds the model's {model.config.max_seq_len} positions")
    model.config.dropout, model.drop.p = c.dropout, c.dropout
    for p in model.parameters():
        p.requires_grad_(True)
    return model.train(), tokenizer


def prepare_run(c: TrainConfig, ctx: distributed.Dist, tokenizer: Tokenizer | None = None) -> TokenData:
    """Tokenize the corpus into out/data once (the main process), then open it everywhere.

    `tokenizer`: a pretrained model's own; None trains one on the corpus as `c.tokenizer` says.
    """
    folder = Path(c.out) / "data"
    if ctx.is_main:
        text = read_corpus(c.data)
        spec = c.tokenizer if tokenizer is None else f"init:{c.init}"
        tokenizer = tokenizer or corpus_tokenizer(text, c.bpe_vocab)
        prepare_data(folder, text, tokenizer, spec, c.val_fraction)
    distributed.barrier(ctx)
    data = TokenData.open(folder)
    data.check_context(c.context)
    return data


class Trainer:
    """The state of a run: model, optimizer, data order, step; and the loop over it."""

    def __init__(self, c: TrainConfig, ctx: distributed.Dist, data: TokenData, model: Transformer):
        if c.grad_accum % ctx.world_size:
            raise InvalidArgument(
                f"grad_accum ({c.grad_accum}) must be a multiple of the number of processes ({ctx.world_size})"
            )
        self.c, self.ctx, self.data, self.out = c, ctx, data, Path(c.out)
        self.model = model.to(ctx.device)
        net = compile_for_training(self.model, ctx.device) if c.compile else self.model
        self.compiled = net is not self.model
        self.net = distributed.wrap(net, ctx)
        self.optimizer = make_optimizer(self.model, c)
        self.sampler = WindowSampler(len(data.train), c.context, c.seed)
        val_windows = WindowSampler(len(data.val), c.context, c.seed + 1)
        self.val_starts = val_windows.draw(c.eval_batches * c.batch_size).view(c.eval_batches, c.batch_size)
        self.local_accum = c.grad_accum // ctx.world_size
        self.step, self.best_val_loss = 0, float("inf")
        self.loss_sum = torch.zeros((), device=ctx.device)
        self.loss_count = 0
        torch.manual_seed(c.seed + ctx.rank)  # dropout

    def autocast(self):
        return torch.autocast(self.ctx.device.type, dtype=torch.bfloat16, enabled=self.c.dtype == "bfloat16")

    def kernels(self):
        """The scope of a compiled forward and backward: `deterministic_kernels`; nothing when eager."""
        return deterministic_kernels() if self.compiled else contextlib.nullcontext()

    def warm_up(self) -> float:
        """Compile now, with a forward and backward pass on a dummy batch; the seconds it took.

        Without it the compilation would land inside the first timed step. It leaves the
        weights, the optimizer, the data order and the RNG as they were, so a run (or a
        resumed run) is the same with or without it. Does nothing for an eager model.
        """
        if not self.compiled:
            return 0.0
        start = time.perf_counter()
        c, device = self.c, self.ctx.device
        # Windows shaped and strided as the real ones (views of one (B, T+1) block): any
        # other layout would make the first real step compile a second time.
        x, y = (t.to(device) for t in windows(self.data.train, torch.zeros(c.batch_size, dtype=torch.long),
                                                c.context))  # (B, T)
        cuda = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda, device_type="cuda"), self.kernels():  # RNG: dropout draws nothing
            with self.autocast():
                _, loss = self.net(x, targets=y)
            loss.backward()
        self.optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    # -- one optimizer step ---------------------------------------------------------
    def train_step(self) -> torch.Tensor:
        """Accumulate gradients over this process's micro-batches, clip, update; the last micro-batch's loss."""
        c, rank = self.c, self.ctx.rank
        starts = self.sampler.draw(c.grad_accum * c.batch_size).view(c.grad_accum, c.batch_size)  # global batch
        mine = starts[rank * self.local_accum:(rank + 1) * self.local_accum]  # (local_accum, B)
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.step, c)
        for i, rows in enumerate(mine):
            x, y = (t.to(self.ctx.device) for t in windows(self.data.train, rows, c.context))  # (B, T)
            last = i == len(mine) - 1
            sync = contextlib.nullcontext() if last or not self.ctx.enabled else self.net.no_sync()
            with sync, self.kernels():
                with self.autocast():
                    _, loss = self.net(x, targets=y)
                (loss / self.local_accum).backward()
            self.loss_sum += loss.detach()
            self.loss_count += 1
        if c.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip, foreach=True)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return loss.detach()

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean validation loss over the fixed validation windows (shared out over processes)."""
        self.model.eval()
        total = torch.zeros((), device=self.ctx.device)
        for i in range(self.ctx.rank, self.c.eval_batches, self.ctx.world_size):
            x, y = (t.to(self.ctx.device) for t in windows(self.data.val, self.val_starts[i], self.c.context))
            with self.autocast():
                _, loss = self.model(x, targets=y)
            total += loss.float()
        self.model.train()
        return distributed.all_sum(self.ctx, total).item() / self.c.eval_batches

    def take_train_loss(self) -> float | None:
        """Mean training loss since the last call, over all processes."""
        if self.loss_count == 0:
            return None
        both = torch.stack([self.loss_sum, torch.tensor(float(self.loss_count), device=self.ctx.device)])
        total, count = distributed.all_sum(self.ctx, both).tolist()
        self.loss_sum.zero_()
        self.loss_count = 0
        return total / count

    # -- checkpoints ----------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"step": self.step, "best_val_loss": self.best_val_loss, "optimizer": self.optimizer.state_dict(),
                "sampler": self.sampler.state_dict(), "torch_rng": torch.get_rng_state()}

    def save(self, links: tuple[str, ...]) -> None:
        if self.ctx.is_main:
            checkpoint.write_checkpoint(self.out, self.step, self.model, self.data.tokenizer, self.state_dict(),
                                        self.c.to_dict(), links)
        distributed.barrier(self.ctx)

    def restore(self, folder: Path) -> None:
        state = checkpoint.read_state(folder, self.model)
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(state["torch_rng"])
        self.step, self.best_val_loss = int(state["step"]), float(state["best_val_loss"])
