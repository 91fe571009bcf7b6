"""Text <-> token ids, on top of Hugging Face `tokenizers`.

One `Tokenizer` class whatever the source: a GGUF file's metadata (the BPE vocab
and merges rebuilt into a `tokenizers` model), a Hugging Face `tokenizer.json`, or
a character vocabulary trained here. It also carries what generation needs to know
about the vocabulary: the EOS ids, the BOS id, the chat template.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

from tokenloom.errors import InvalidArgument

# GGUF `tokenizer.ggml.token_type` values (llama.cpp's llama_token_type).
TOKEN_TYPE_CONTROL = 3
TOKEN_TYPE_USER_DEFINED = 4

# llama.cpp's pre-tokenizer families for byte-level BPE vocabularies, by the
# `tokenizer.ggml.pre` name. "digits" splits every digit into its own piece
# before the GPT-2 regex runs, which is what llama.cpp does for these names.
_DIGIT_SPLIT_PRE = {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva"}
_GPT2_PRE = {"default", "gpt2", "gpt-2", "mpt", "olmo", "jais"}


@dataclass
class SpecialTokens:
    """The ids generation and chat templates rely on."""

    bos_id: int | None = None
    eos_ids: tuple[int, ...] = ()
    pad_id: int | None = None
    add_bos: bool = False
    chat_template: str | None = None
    extra: dict = field(default_factory=dict)


class Tokenizer:
    """Encode text to ids and decode ids to text.

    >>> tok.encode("The cat")          # doctest: +SKIP
    [504, 2644]
    >>> tok.decode([504, 2644])        # doctest: +SKIP
    'The cat'
    """

    def __init__(self, backend: HFTokenizer, special: SpecialTokens):
        self.backend = backend
        self.special = special
        self.vocab_size = backend.get_vocab_size(with_added_tokens=True)

    # -- the everyday API ---------------------------------------------------
    def encode(self, text: str, add_bos: bool | None = None) -> list[int]:
        """Token ids of `text`; special tokens written in the text (e.g. <|im_end|>) are recognised."""
        if not isinstance(text, str):
            raise InvalidArgument(f"text must be a str, got {type(text).__name__}")
        ids = self.backend.encode(text, add_special_tokens=False).ids
        add_bos = self.special.add_bos if add_bos is None else add_bos
        if add_bos and self.special.bos_id is not None:
            ids = [self.special.bos_id] + ids
        return ids

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        """Text of `ids` (bytes that do not form whole UTF-8 characters become U+FFFD)."""
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_text(self, token_id: int) -> str:
        """How one token reads on its own (for tables of next-token probabilities)."""
        return self.backend.decode([token_id], skip_special_tokens=False)

    @property
    def eos_ids(self) -> tuple[int, ...]:
        return self.special.eos_ids

    @property
    def pad_id(self) -> int:
        if self.special.pad_id is not None:
            return self.special.pad_id
        return self.special.eos_ids[0] if self.special.eos_ids else 0

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """Render chat messages with the model's own Jinja template."""
        from tokenloom.chat import render_chat

        return render_chat(self, messages, add_generation_prompt)

    # -- persistence --------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        self.backend.save(str(folder / "tokenizer.json"))
        meta = {
            "bos_id": self.special.bos_id,
            "eos_ids": list(self.special.eos_ids),
            "pad_id": self.special.pad_id,
            "add_bos": self.special.add_bos,
            "chat_template": self.special.chat_template,
        }
        (folder / "tokenizer_meta.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, folder: str | Path) -> "Tokenizer":
        """Our own checkpoint folder: tokenizer.json + tokenizer_meta.json."""
        folder = Path(folder)
        meta = json.loads((folder / "tokenizer_meta.json").read_text())
        special = SpecialTokens(
            bos_id=meta.get("bos_id"),
            eos_ids=tuple(meta.get("eos_ids", ())),
            pad_id=meta.get("pad_id"),
            add_bos=bool(meta.get("add_bos", False)),
            chat_template=meta.get("chat_template"),
        )
        return cls(HFTokenizer.from_file(str(folder / "tokenizer.json")), special)


def byte_level_bpe_from_gguf(
    tokens: list[str], merges: list[str], token_types: list[int], pre: str
) -> HFTokenizer:
    """Rebuild a GPT-2 style byte-level BPE tokenizer from GGUF metadata.

    The pre-tokenizer follows llama.cpp for `pre`: for "smollm" (and the other
    digit-splitting families) every digit becomes its own piece before the GPT-2
    regex, so "  12" splits as ["  ", "1", "2"]; plain GPT-2 would give [" ", " 12"].
    """
    if pre not in _DIGIT_SPLIT_PRE | _GPT2_PRE:
        raise InvalidArgument(
            f"unsupported tokenizer.ggml.pre {pre!r}; supported: {sorted(_DIGIT_SPLIT_PRE | _GPT2_PRE)}"
        )
    vocab = {token: index for index, token in enumerate(tokens)}
    pairs = [tuple(merge.split(" ", 1)) for merge in merges]
    backend = HFTokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in _DIGIT_SPLIT_PRE:
        digits = pre_tokenizers.Split(Regex(r"\p{N}"), behavior="isolated")
        backend.pre_tokenizer = pre_tokenizers.Sequence([digits, byte_level])
    else:
        backend.pre_tokenizer = byte_level
    backend.decoder = decoders.ByteLevel()
    special = [
        AddedToken(tokens[i], special=token_types[i] == TOKEN_TYPE_CONTROL, normalized=False)
        for i in range(len(tokens))
        if token_types[i] in (TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED)
    ]
    backend.add_special_tokens([t for t in special if t.special])
    backend.add_tokens([t for t in special if not t.special])
    return backend
