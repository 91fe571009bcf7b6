"""Processor chains: the step names, the four presets, and a chain of the user's choosing.

A chain is a list of step names, applied in order, then a selector (greedy or a seeded
draw; mirostat draws itself). `SamplingParams(samplers=[...])` orders the steps as
llama.cpp's `--samplers` does; without it, `order` picks a preset's chain. The preset
also brings its rules, which hold for a user chain too:

    ties           top_k and typical_p among tokens tied at the boundary: "lowest_id"
                   keeps exactly the count, lowest ids first; "all" keeps the whole tie
    typical_stop   typical_p stops once the cumulative mass "reaches" p (ours, HF) or
                   only once it "exceeds" p (llama.cpp)
    penalties      "ours": repetition over prompt + output, presence/frequency over the
                   output; "llama.cpp": all three over the last penalty_last_n tokens of
                   prompt + output, one step, as llama-server feeds its sampler
    top_k          the top_k used when SamplingParams.top_k is unset (HF: 50)
    penalty_last_n the window used when SamplingParams.penalty_last_n is unset

Rules for a user chain: names may use llama.cpp's spellings (typ_p, temp, top-k, ...);
"penalties" stands for the three penalties (one step under llama.cpp's rules); the hard
bans (logit_bias, min_tokens, no_repeat_ngram) go first when the chain leaves them out;
any other step whose option is set but which the chain leaves out is an error (never a
silent no-op). mirostat = 1 or 2 replaces the chain by bans → temperature → mirostat,
as llama.cpp's common sampler does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokenloom.errors import InvalidArgument

STEPS = ("logit_bias", "min_tokens", "no_repeat_ngram", "repetition_penalty", "presence_penalty",
         "frequency_penalty", "penalties", "dry", "temperature", "top_n_sigma", "top_k", "top_p", "typical_p",
         "min_p", "epsilon_cutoff", "eta_cutoff", "xtc")
HARD_STEPS = ("logit_bias", "min_tokens", "no_repeat_ngram")
PENALTY_STEPS = ("repetition_penalty", "presence_penalty", "frequency_penalty")
ALIASES = {"typ_p": "typical_p", "typical": "typical_p", "temp": "temperature", "epsilon": "epsilon_cutoff",
           "eta": "eta_cutoff", "nsigma": "top_n_sigma", "sigma": "top_n_sigma", "repeat_penalty":
           "repetition_penalty", "bias": "logit_bias"}


@dataclass(frozen=True)
class Preset:
    """A named chain with its rules (see the module docstring); `extensions` are steps the
    peer itself lacks, placed by us."""

    name: str
    chain: tuple[str, ...]
    ties: str
    typical_stop: str = "reaches"
    penalties: str = "ours"
    top_k: int = 0
    penalty_last_n: int = -1
    extensions: frozenset[str] = frozenset()

    @property
    def steps(self) -> tuple[str, ...]:
        return self.chain

    def describe(self) -> str:
        return " → ".join(s + ("*" if s in self.extensions else "") for s in self.chain)


PRESETS: dict[str, Preset] = {preset.name: preset for preset in (
    Preset("tokenloom", ("logit_bias", "min_tokens", "no_repeat_ngram", "repetition_penalty", "presence_penalty",
                         "frequency_penalty", "dry", "temperature", "top_n_sigma", "top_k", "top_p", "typical_p",
                         "epsilon_cutoff", "eta_cutoff", "min_p", "xtc"), ties="lowest_id"),
    Preset("hf", ("logit_bias", "repetition_penalty", "presence_penalty", "frequency_penalty", "dry",
                  "no_repeat_ngram", "min_tokens", "temperature", "top_n_sigma", "top_k", "top_p", "min_p",
                  "typical_p", "epsilon_cutoff", "eta_cutoff", "xtc"), ties="all", top_k=50,
           extensions=frozenset({"presence_penalty", "frequency_penalty", "dry", "top_n_sigma", "xtc"})),
    Preset("vllm", ("min_tokens", "logit_bias", "repetition_penalty", "frequency_penalty", "presence_penalty",
                    "dry", "no_repeat_ngram", "temperature", "top_n_sigma", "min_p", "top_k", "top_p",
                    "typical_p", "epsilon_cutoff", "eta_cutoff", "xtc"), ties="all",
           extensions=frozenset({"dry", "no_repeat_ngram", "top_n_sigma", "typical_p", "epsilon_cutoff",
                                 "eta_cutoff", "xtc"})),
    Preset("llama.cpp", ("logit_bias", "min_tokens", "penalties", "no_repeat_ngram", "dry", "top_n_sigma",
                         "top_k", "typical_p", "top_p", "min_p", "epsilon_cutoff", "eta_cutoff", "xtc",
                         "temperature"), ties="lowest_id", typical_stop="exceeds", penalties="llama.cpp",
           penalty_last_n=64,
           extensions=frozenset({"min_tokens", "no_repeat_ngram", "epsilon_cutoff", "eta_cutoff"})),
)}
PRESET_NAMES = tuple(PRESETS)


def _canonical(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgument(f"samplers must hold step names (strings), got {name!r}")
    key = name.strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key == "mirostat":
        raise InvalidArgument("samplers: mirostat is not a step of the chain; set mirostat=1 or 2 "
                              "(it replaces the chain by temperature → mirostat)")
    if key not in STEPS:
        raise InvalidArgument(f"samplers: unknown step {name!r}; known steps: {', '.join(STEPS)} "
                              f"(llama.cpp spellings such as typ_p, temp, top-k are accepted)")
    return key


def check_samplers(name: str, value: Any) -> tuple[str, ...]:
    """A tuple of canonical step names from a list, or from one string split at ';' or ','.

    "top_k;typ_p;temp" -> ("top_k", "typical_p", "temperature").
    """
    if isinstance(value, str):
        value = [part for part in value.replace(",", ";").split(";") if part.strip()]
    if not isinstance(value, (list, tuple)) or not value:
        raise InvalidArgument(f"{name} must be a non-empty list of step names, got {value!r}")
    steps = tuple(_canonical(step) for step in value)
    repeated = sorted({s for s in steps if steps.count(s) > 1})
    if repeated:
        raise InvalidArgument(f"{name}: each step at most once, got {', '.join(repeated)} more than once")
    if "penalties" in steps and set(steps) & set(PENALTY_STEPS):
        raise InvalidArgument(f"{name}: 'penalties' already stands for {', '.join(PENALTY_STEPS)}; "
                              "name either the group or the single penalties")
    return steps


def _expand(steps: tuple[str, ...], preset: Preset) -> tuple[str, ...]:
    """'penalties' becomes the three penalties in the preset's own order (under our rules), or
    the three singles become one 'penalties' step (under llama.cpp's)."""
    out: list[str] = []
    for step in steps:
        if preset.penalties == "llama.cpp" and step in PENALTY_STEPS + ("penalties",):
            if "penalties" not in out:
                out.append("penalties")
        elif step == "penalties":
            own = [s for s in preset.chain if s in PENALTY_STEPS] or list(PENALTY_STEPS)
            out.extend(own)
        else:
            out.append(step)
    return tuple(out)


def chain_steps(samplers: tuple[str, ...] | None, preset: Preset, mirostat: int, greedy: bool
                ) -> tuple[str, ...]:
    """The steps a Sampler builds, in order (each may still be a no-op and be left out).

    Greedy keeps the steps before temperature (temperature and what follows shape only a
    draw), so under llama.cpp's chain, where temperature is last, every filter still runs.
    """
    if mirostat:
        hard = tuple(s for s in preset.chain if s in HARD_STEPS)
        return ("structured",) + (hard if greedy else hard + ("temperature", "mirostat"))
    steps = preset.chain if samplers is None else _expand(samplers, preset)
    missing = tuple(s for s in preset.chain if s in HARD_STEPS and s not in steps)
    steps = ("structured",) + missing + steps  # the constraint's mask (structured.py) always first
    if greedy and "temperature" in steps:
        steps = steps[:steps.index("temperature")]
    return steps


# When a step has something to do, judged from the params alone (no vocabulary needed), so
# that SamplingParams can refuse an impossible chain when it is built, before any request
# runs. (The sampler's builders decide the same from the same fields.)
ACTIVE = {
    "logit_bias": lambda p: bool(p.logit_bias), "min_tokens": lambda p: p.min_tokens > 0,
    "no_repeat_ngram": lambda p: p.no_repeat_ngram_size > 0,
    "repetition_penalty": lambda p: p.repetition_penalty != 1.0,
    "presence_penalty": lambda p: p.presence_penalty != 0.0,
    "frequency_penalty": lambda p: p.frequency_penalty != 0.0,
    "penalties": lambda p: p.repetition_penalty != 1.0 or p.presence_penalty != 0.0 or p.frequency_penalty != 0.0,
    "dry": lambda p: p.dry_multiplier > 0.0 and p.dry_penalty_last_n != 0,
    "temperature": lambda p: p.temperature not in (0.0, 1.0) or p.dynatemp_range > 0.0,
    "top_n_sigma": lambda p: p.top_n_sigma > 0.0, "top_k": lambda p: bool(p.top_k),
    "top_p": lambda p: p.top_p < 1.0, "typical_p": lambda p: p.typical_p < 1.0, "min_p": lambda p: p.min_p > 0.0,
    "epsilon_cutoff": lambda p: p.epsilon_cutoff > 0.0, "eta_cutoff": lambda p: p.eta_cutoff > 0.0,
    "xtc": lambda p: p.xtc_probability > 0.0 and p.xtc_threshold <= 0.5,
}


def check_chain(params) -> None:
    """Refuse options whose step the chain leaves out, and the combinations no chain can run."""
    preset = PRESETS[params.order]
    chain = chain_steps(params.samplers, preset, params.mirostat, greedy=False)
    grouped = PENALTY_STEPS if preset.penalties == "llama.cpp" else ("penalties",)
    for step in STEPS:
        if step in chain or step in grouped or not ACTIVE[step](params):
            continue
        if params.mirostat:
            raise InvalidArgument(f"mirostat={params.mirostat} replaces the chain by temperature → mirostat, "
                                  f"so {step} would not run: unset it, or set mirostat=0")
        raise InvalidArgument(f"{step} is set but samplers leaves it out ({', '.join(chain)}): "
                              f"add '{step}' to samplers or unset it")
    if params.mirostat and params.dynatemp_range > 0.0:
        raise InvalidArgument("mirostat uses a plain temperature (as llama.cpp): dynatemp_range must be 0 with it")
    if preset.penalties != "llama.cpp" and params.penalty_last_n not in (None, -1):
        raise InvalidArgument(f"penalty_last_n={params.penalty_last_n} needs llama.cpp's penalty rules "
                              f"(order='llama.cpp'); under order={params.order!r} the penalties cover "
                              "the whole prompt + output (penalty_last_n -1)")
