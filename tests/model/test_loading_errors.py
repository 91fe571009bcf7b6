"""Bad model inputs give clear errors, never a traceback from deep inside."""

import shutil

import pytest

import tokenloom as tl
from tokenloom.errors import CorruptModelFile, InvalidArgument, ModelNotFound
from tokenloom.model.registry import resolve


def test_unknown_name_lists_what_is_allowed():
    with pytest.raises(ModelNotFound, match="smollm2-135m-instruct"):
        tl.load("no-such-model")


def test_truncated_gguf_is_reported_as_truncated(tmp_path):
    _, path = resolve("smollm2-135m-instruct")
    broken = tmp_path / "broken.gguf"
    with open(path, "rb") as src, open(broken, "wb") as dst:
        dst.write(src.read(path.stat().st_size // 2))
    with pytest.raises(CorruptModelFile, match="truncated|not a readable GGUF"):
        tl.load(broken)


def test_garbage_file_with_gguf_suffix_is_not_readable(tmp_path):
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"this is not a model" * 100)
    with pytest.raises(CorruptModelFile, match="not a readable GGUF"):
        tl.load(junk)


def test_unsupported_precision_names_the_choices():
    with pytest.raises(InvalidArgument, match="precision must be one of"):
        tl.load("smollm2-135m-instruct", precision="int3")


def test_folder_without_weights_is_reported(tiny_llama_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_llama_dir, copy)
    for f in copy.glob("*.safetensors"):
        f.unlink()
    with pytest.raises(CorruptModelFile, match="safetensors"):
        tl.load(copy)
