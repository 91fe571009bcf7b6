"""`LanguageModel`: what a user holds after `tokenloom.load(...)`.

    lm = tokenloom.load("smollm2-135m-instruct")
    lm.next_token_distribution("The cat sat on the", top=5)   # P(x_t | x_<t), most likely first
    lm.generate("The cat", SamplingParams(top_p=0.9, seed=0), max_tokens=20)
    for piece in lm.stream("Once upon a time"): print(piece, end="")
    lm.chat([{"role": "user", "content": "Hi!"}])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from tokenloom.errors import InvalidArgument
from tokenloom.generation.engine import Completion, Engine, Request
from tokenloom.generation.history import TokenHistory
from tokenloom.generation.params import SamplingParams
from tokenloom.generation.sampler import Sampler
from tokenloom.generation.scheduler import RuntimeLimits, Scheduler
from tokenloom.generation.speculative import PromptLookup, speculative_config
from tokenloom.model.registry import DEFAULT_MODEL, load_model



@dataclass(frozen=True)
class TokenProb:
    token: str
    id: int
    prob: float

    def to_dict(self) -> dict:
        return {"token": self.token, "id": self.id, "prob": self.prob}


def load(name_or_path: str | Path = DEFAULT_MODEL, precision: str = "auto", compile: bool = False,
         limits: RuntimeLimits | None = None, speculative: str | PromptLookup | None = None,
         draft_tokens: int | None = None, device: str | torch.device | None = None) -> "LanguageModel":
    """A model by registered name, GGUF path, Hugging Face folder or tokenloom checkpoint.

    precision: "auto" (the default) computes a GGUF file's quantized weights natively
    ("native": 4-bit kernels, bfloat16 products, float32 residual stream) and anything
    else in float32; "float32" and "bfloat16" dequantize everything, for exact work.
    compile: run decode steps through `torch.compile` (faster steps after a compilation
    of tens of seconds on the first request; see `Engine.compile`).
    limits: what the runtime runs at once (`RuntimeLimits`: running sequences, queue,
    cache memory, prefix cache, prefill chunk).
    speculative: "ngram" drafts tokens by prompt lookup and verifies them in one forward pass
    (generation/speculative.py): the same tokens as plain decoding, fewer passes when the
    output repeats its prompt; draft_tokens: ids drafted per step (default 5).
    device: "cpu" (the default), "cuda" or "cuda:N" (model/device.py: on CUDA a GGUF file's
    "auto" precision is bfloat16, and "native" is refused).
    """
    from tokenloom.model import device as devices
    from tokenloom.model.registry import resolve

    drafter = speculative_config(speculative, draft_tokens)  # bad values fail before the model loads
    place = devices.resolve(device)
    if place.type != "cpu":
        precision = devices.precision_for(place, precision, resolve(name_or_path)[0])
    model, tokenizer, source = load_model(name_or_path, precision)
    devices.place_model(model, place)
    lm = LanguageModel(model, tokenizer, name=str(name_or_path), source=source, limits=limits,
                       speculative=drafter)
    if compile:
        lm.engine.compile()
    return lm


class LanguageModel:
    def __init__(self, model, tokenizer, name: str = "", source: Path | None = None,
                 limits: RuntimeLimits | None = None, speculative: PromptLookup | None = None):
        self.model, self.tokenizer = model, tokenizer
        self.name, self.source, self.precision = name, source, model.precision
        self.config = model.config
        self.engine = Engine(model, tokenizer)
        # Every call below runs through the scheduler.
        self.scheduler = Scheduler(self.engine, limits, speculative=speculative)

    def __repr__(self) -> str:
        c = self.config
        return f"LanguageModel({self.name!r}, {c.arch}, {c.n_layers} layers, dim {c.dim}, {self.precision})"

    # -- next-token prediction ---------------------------------------------
    def encode_prompt(self, text: str) -> list[int]:
        if not isinstance(text, str) or not text:
            raise InvalidArgument("prompt is empty: give some text to continue")
        ids = self.tokenizer.encode(text)
        if not ids:
            raise InvalidArgument(f"prompt {text!r} encodes to no tokens")
        if len(ids) >= self.config.max_seq_len:
            raise InvalidArgument(
                f"prompt has {len(ids)} tokens; the model's context is {self.config.max_seq_len}, "
                f"so a prompt may have at most {self.config.max_seq_len - 1}"
            )
        return ids

    def logits(self, token_ids: list[int]) -> torch.Tensor:
        """Teacher-forced logits, float32 (T, V): row t scores x_{t+1} given x_0..x_t."""
        if len(token_ids) == 0 or len(token_ids) > self.config.max_seq_len:
            raise InvalidArgument(f"token_ids must hold 1 to {self.config.max_seq_len} ids, got {len(token_ids)}")
        ids = torch.tensor([list(token_ids)], dtype=torch.long, device=self.model.device)
        with torch.inference_mode():
            return self.model(ids)[0].float().cpu()

    def next_token_logits(self, text: str) -> torch.Tensor:
        """Logits (V,) of the token after `text`, prefilled by the runtime (its prefix cache included)."""
        return self.scheduler.score(self.encode_prompt(text), keep=1)[-1]  # (V,)

    def next_token_distribution(self, text: str, top: int = 10, temperature: float = 1.0) -> list[TokenProb]:
        """The `top` most likely next tokens with P_i = exp(l_i/T) / Σ_j exp(l_j/T)."""
        if top < 1:
            raise InvalidArgument(f"top must be at least 1, got {top}")
        if temperature <= 0:
            raise InvalidArgument(f"temperature must be > 0 for a distribution, got {temperature}")
        probs = torch.softmax(self.next_token_logits(text) / temperature, dim=-1)
        values, ids = probs.topk(min(top, probs.numel()))
        return [TokenProb(self.tokenizer.token_text(i), i, p) for p, i in zip(values.tolist(), ids.tolist())]

    # -- generation -----------------------------------------------------------
    def _requests(self, prompts, params: SamplingParams) -> list[Request]:
        encoded = [self.encode_prompt(p) for p in prompts]
        return [Request(ids, params, j) for ids in encoded for j in range(params.n)]

    @staticmethod
    def _params(params: SamplingParams | None, overrides: dict) -> SamplingParams:
        params = params or SamplingParams()
        return dataclasses.replace(params, **overrides) if overrides else params

    def generate(self, prompt_or_prompts, params: SamplingParams | None = None, **overrides):
        """Completion for one prompt (n=1); otherwise a list, prompt by prompt, n each."""
        params = self._params(params, overrides)
        single = isinstance(prompt_or_prompts, str)
        prompts = [prompt_or_prompts] if single else list(prompt_or_prompts)
        if not prompts:
            raise InvalidArgument("no prompts given")
        completions = self._complete(self._requests(prompts, params))
        for c in completions:
            c.index = c.index % params.n
        return completions[0] if single and params.n == 1 else completions

    def generate_batch(self, prompts_and_params: list[tuple[str, SamplingParams]]) -> list[Completion]:
        """One batch where every prompt brings its own SamplingParams (n=1 each)."""
        requests = []
        for prompt, params in prompts_and_params:
            if params.n != 1:
                raise InvalidArgument(f"generate_batch takes n = 1 for each prompt, got {params.n}")
            requests.append(Request(self.encode_prompt(prompt), params))
        return self._complete(requests)

    def _complete(self, requests: list[Request]) -> list[Completion]:
        """Run every request through the runtime; the completions in request order."""
        handles = self.scheduler.submit_many(requests, block=True)
        completions = [handle.result() for handle in handles]
        for i, completion in enumerate(completions):
            completion.index = i
        return completions

    def beam_search(self, prompt: str, beam_width: int = 4, max_tokens: int = 16, length_penalty: float = 1.0,
                    early_stopping: bool | str = False) -> list:
        """The `beam_width` best continuations of `prompt` by beam search, best first (`BeamCompletion`:
        text, token_ids, score, logprob, finish_reason). Rules and scoring: generation/beam.py;
        they are those of transformers' generate(num_beams=beam_width, do_sample=False)."""
        from tokenloom.generation.beam import BeamParams

        params = BeamParams(beam_width, max_tokens, length_penalty, early_stopping)
        return self.scheduler.beam_search(self.encode_prompt(prompt), params)

    def stream(self, prompt: str, params: SamplingParams | None = None, **overrides) -> Iterator[str]:
        """Text pieces as they are generated; never half a UTF-8 character, never part of a stop string."""
        params = self._params(params, overrides)
        if params.n != 1:
            raise InvalidArgument(f"stream produces one sequence; n must be 1, got {params.n}")
        handle = self.scheduler.submit_many(self._requests([prompt], params), block=True)[0]
        try:
            for step in handle:
                if step.text:
                    yield step.text
        finally:  # a consumer that stops early frees the sequence
            handle.cancel()

    def chat(self, messages: list[dict], params: SamplingParams | None = None, **overrides):
        """Reply to chat messages, rendered with the model's own chat template."""
        prompt = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        return self.generate(prompt, params, **overrides)

    # -- explanation ------------------------------------------------------------
    def explain(self, text: str, params: SamplingParams | None = None, top: int = 10, **overrides):
        """What each processor of the sampling chain does to the next-token distribution after `text`."""
        params = self._params(params, overrides)
        ids = self.encode_prompt(text)
        logits = self.next_token_logits(text)
        sampler = Sampler(params, logits.shape[-1], eos_token_ids=self.tokenizer.eos_ids,
                          tokenizer=self.tokenizer)
        history = TokenHistory([ids], logits.shape[-1])
        return sampler.explain(history, logits, top=top)
