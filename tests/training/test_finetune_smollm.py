"""Fine-tuning the pretrained SmolLM2-135M-Instruct: a couple of steps on a short text."""

import pytest
import torch

import tokenloom as tl
from tokenloom.training import build_config, train
from tokenloom.training.data import read_corpus


@pytest.mark.slow
def test_two_finetuning_steps_lower_the_loss_and_keep_the_tokenizer(tmp_path, smollm):
    corpus = tmp_path / "shakespeare.txt"
    corpus.write_text(read_corpus(None)[:6_000])
    config = build_config(None, init="smollm2-135m-instruct", data=str(corpus), out=str(tmp_path / "run"),
                          context=24, batch_size=2, steps=2, warmup=1, lr=1e-4, min_lr=1e-5, weight_decay=0.0,
                          eval_every=2, eval_batches=1, seed=0, compile=False)
    result = train(config, show_progress=False)
    before, after = result.metrics[0]["val_loss"], result.metrics[-1]["val_loss"]
    assert after < before, (before, after)
    tuned = tl.load(result.out / "last")
    assert tuned.config.n_layers == 30 and tuned.config.vocab_size == 49152
    assert tuned.tokenizer.encode("ROMEO: But soft") == smollm.tokenizer.encode("ROMEO: But soft")
    assert tuned.tokenizer.special.chat_template == smollm.tokenizer.special.chat_template
    assert torch.isfinite(tuned.next_token_logits("ROMEO:")).all()
