"""tokenloom: autoregressive language models, one token at a time.

    import tokenloom as tl
    lm = tl.load("smollm2-135m-instruct")
    lm.next_token_distribution("The cat sat on the", top=10)
    lm.generate("The cat", tl.SamplingParams(top_p=0.9, temperature=0.8, seed=0))

Submodules are imported lazily, so `import tokenloom.metrics` never pulls in torch.
"""

from importlib import import_module

__version__ = "0.1.0"

_LAZY = {
    "load": ("tokenloom.generation.generate", "load"),
    "LanguageModel": ("tokenloom.generation.generate", "LanguageModel"),
    "SamplingParams": ("tokenloom.generation.params", "SamplingParams"),
    "Tokenizer": ("tokenloom.tokenizer", "Tokenizer"),
    "TokenloomError": ("tokenloom.errors", "TokenloomError"),
    "InvalidArgument": ("tokenloom.errors", "InvalidArgument"),
}
_SUBMODULES = {"metrics", "eval", "model", "generation", "training", "rag"}

__all__ = sorted(_LAZY) + sorted(_SUBMODULES)


def __getattr__(name):
    if name in _LAZY:
        module, attribute = _LAZY[name]
        return getattr(import_module(module), attribute)
    if name in _SUBMODULES:
        return import_module(f"tokenloom.{name}")
    raise AttributeError(f"module 'tokenloom' has no attribute {name!r}")
