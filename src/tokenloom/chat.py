"""Chat templates: the model's own Jinja template, rendered in a sandbox."""

from __future__ import annotations

from functools import lru_cache

from tokenloom.errors import InvalidArgument

_ROLES = {"system", "user", "assistant", "tool"}


def _raise(message: str):
    raise InvalidArgument(f"chat template: {message}")


@lru_cache(maxsize=8)
def _compile(source: str):
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    return env.from_string(source)


def validate_messages(messages) -> list[dict]:
    """Messages as OpenAI writes them: [{"role": "user", "content": "..."}, ...]."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise InvalidArgument("messages must be a non-empty list of {'role', 'content'} objects")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise InvalidArgument(f"messages[{index}] must have 'role' and 'content', got {message!r}")
        if message["role"] not in _ROLES:
            raise InvalidArgument(f"messages[{index}].role must be one of {sorted(_ROLES)}, got {message['role']!r}")
        if not isinstance(message["content"], str):
            raise InvalidArgument(f"messages[{index}].content must be a string")
    return list(messages)


def render_chat(tokenizer, messages, add_generation_prompt: bool = True) -> str:
    """The prompt text for `messages`; a plain fallback where the model has no template."""
    messages = validate_messages(messages)
    source = tokenizer.special.chat_template
    if not source:
        lines = [f"{m['role']}: {m['content']}" for m in messages]
        return "\n".join(lines) + ("\nassistant:" if add_generation_prompt else "")
    bos = tokenizer.special.bos_id
    eos = tokenizer.special.eos_ids[0] if tokenizer.special.eos_ids else None
    return _compile(source).render(
        messages=messages,
        add_generation_prompt=add_generation_prompt,
        bos_token=tokenizer.token_text(bos) if bos is not None else "",
        eos_token=tokenizer.token_text(eos) if eos is not None else "",
    )
