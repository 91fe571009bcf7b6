"""The teacher-forcing loop end to end on a tiny model: loss goes down, the run folder is complete."""

import json

import pytest
import torch

import tokenloom as tl
from tokenloom.errors import InvalidArgument
from tokenloom.training import build_config, train
from tokenloom.training.data import read_corpus


def tiny_config(tmp_path, **options):
    corpus = tmp_path / "corpus.txt"
    if not corpus.exists():
        corpus.write_text(read_corpus(None)[:60_000])
    settings = dict(data=str(corpus), out=str(tmp_path / "run"), layers=2, heads=2, dim=32, context=32,
                    batch_size=8, steps=60, warmup=5, lr=1e-2, min_lr=1e-3, eval_every=20, eval_batches=8,
                    compile=False)
    return build_config(None, **{**settings, **options})


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("loop")
    return tiny_config(tmp_path), train(tiny_config(tmp_path), show_progress=False)


def test_validation_loss_decreases(finished_run):
    _, result = finished_run
    val = [e["val_loss"] for e in result.metrics]
    assert [e["step"] for e in result.metrics] == [0, 20, 40, 60]
    assert val[0] == pytest.approx(torch.log(torch.tensor(65.0)).item(), abs=0.3)  # uniform over 65 characters
    assert all(a > b for a, b in zip(val, val[1:])), val
    assert val[-1] < val[0] - 0.8


def test_metrics_file_and_loss_curve_are_written(finished_run):
    config, result = finished_run
    out = result.out
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines == result.metrics
    for entry in lines[1:]:
        assert {"step", "train_loss", "val_loss", "ms_per_step", "tokens_per_s"} <= set(entry)
        assert entry["train_loss"] > 0 and entry["ms_per_step"] > 0 and entry["tokens_per_s"] > 0
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_the_result_is_a_model_like_any_other(finished_run):
    _, result = finished_run
    lm = tl.load(result.out / "last")
    assert lm.config.n_layers == 2 and lm.tokenizer.vocab_size == lm.config.vocab_size
    completion = lm.generate("ROMEO:", tl.SamplingParams(temperature=0.8, seed=0), max_tokens=10)
    assert len(completion.token_ids) == 10
    ids = lm.tokenizer.encode("First Citizen:\nBefore we proceed")
    logits = lm.logits(ids)
    loss = torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(ids[1:]))
    assert loss.item() < torch.log(torch.tensor(65.0)).item() - 0.5
    assert (result.out / "best").resolve().name == "step-0000060"


def test_a_finished_run_folder_is_not_overwritten(finished_run):
    config, _ = finished_run
    with pytest.raises(InvalidArgument, match="--resume"):
        train(config, show_progress=False)


def test_a_run_stopped_after_a_checkpoint_resumes_bit_for_bit_with_dropout(tmp_path, monkeypatch):
    """The checkpoint carries the optimizer, the data order and the RNG (the dropout masks) across a stop."""
    from tokenloom.training.trainer import Trainer

    settings = dict(steps=10, eval_every=5, checkpoint_every=3, dropout=0.2)
    straight = train(tiny_config(tmp_path, out=str(tmp_path / "straight"), **settings), show_progress=False)
    step = Trainer.train_step

    def stop_at_step_7(self):
        if self.step == 7:
            raise KeyboardInterrupt  # in place of a kill: the last checkpoint is step 6's
        return step(self)

    config = tiny_config(tmp_path, out=str(tmp_path / "stopped"), **settings)
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "train_step", stop_at_step_7)
        with pytest.raises(KeyboardInterrupt):
            train(config, show_progress=False)
    torch.manual_seed(12345)  # what the process drew meanwhile must not matter
    resumed = train(config, resume=True, show_progress=False)
    curve = [(m["step"], m["val_loss"]) for m in straight.metrics]
    assert [(m["step"], m["val_loss"]) for m in resumed.metrics] == curve
    a, b = tl.load(straight.out / "last").model.state_dict(), tl.load(resumed.out / "last").model.state_dict()
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_bpe_tokenizer_run_with_gradient_accumulation(tmp_path):
    config = tiny_config(tmp_path, tokenizer="bpe:300", grad_accum=2, batch_size=4, steps=6, eval_every=3)
    result = train(config, show_progress=False)
    lm = tl.load(result.out / "last")
    assert lm.config.vocab_size == 300
    assert result.metrics[-1]["val_loss"] < result.metrics[0]["val_loss"]


class Wrapped(torch.nn.Module):
    """Stands in for a compiled model in fast tests: another module that runs the same model."""

    def __init__(self, model):
        super().__init__()
        self.inner = model

    def forward(self, *args, **kwargs):
        return self.inner(*args, **kwargs)


def test_compiling_warm_up_changes_nothing_the_run_depends_on(tmp_path, monkeypatch):
    from tokenloom.training import trainer

    monkeypatch.setattr(trainer, "compiler_available", lambda device: True)
    monkeypatch.setattr(torch, "compile", Wrapped)
    runs = {}
    for compiled in (False, True):  # dropout on, so a warm-up that drew from the RNG would show
        config = tiny_config(tmp_path, out=str(tmp_path / f"run-{compiled}"), steps=10, eval_every=5,
                             dropout=0.2, compile=compiled)
        runs[compiled] = train(config, show_progress=False)
    eager, stand_in = runs[False], runs[True]
    assert stand_in.compile_s > 0 and eager.compile_s == 0
    assert stand_in.metrics[0]["compile_s"] == stand_in.compile_s and "compile_s" not in eager.metrics[0]
    assert [m["val_loss"] for m in stand_in.metrics] == [m["val_loss"] for m in eager.metrics]
    a, b = tl.load(eager.out / "last").model.state_dict(), tl.load(stand_in.out / "last").model.state_dict()
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_without_a_cpp_compiler_training_warns_and_runs_eagerly(tmp_path, monkeypatch):
    from tokenloom.training import trainer

    monkeypatch.setattr(trainer, "compiler_available", lambda device: False)
    config = tiny_config(tmp_path, steps=2, eval_every=2, compile=True)
    with pytest.warns(UserWarning, match="C\\+\\+ compiler"):
        result = train(config, show_progress=False)
    assert result.compile_s == 0 and result.step == 2


@pytest.mark.slow
def test_compiled_training_follows_the_eager_loss_curve(tmp_path):
    runs = {}
    for compiled in (False, True):
        config = tiny_config(tmp_path, out=str(tmp_path / f"run-{compiled}"), steps=20, eval_every=10,
                             compile=compiled)
        runs[compiled] = train(config, show_progress=False)
    assert runs[True].compile_s > 0
    for a, b in zip(runs[False].metrics, runs[True].metrics):
        assert b["val_loss"] == pytest.approx(a["val_loss"], abs=2e-3)  # fused kernels sum in another order
    assert runs[True].metrics[-1]["val_loss"] < runs[True].metrics[0]["val_loss"] - 0.3
