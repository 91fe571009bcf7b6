"""The command line: JSON that scripts rely on, one-line errors with exit code 2."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def tokenloom(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "tokenloom", *args], capture_output=True, text=True, timeout=600, cwd=cwd
    )


def test_next_json_lists_tokens_with_probabilities():
    result = tokenloom("next", "The cat sat on the", "--top", "5", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [set(r) for r in rows] == [{"token", "id", "prob"}] * 5
    # native precision puts " cat" and " moon" within a point of each other (float32: 7.1% and 5.0%)
    assert {" cat", " moon"} <= {r["token"] for r in rows[:2]} and 0.04 < rows[0]["prob"] < 0.1
    assert [r["prob"] for r in rows] == sorted((r["prob"] for r in rows), reverse=True)


def test_generate_json_has_the_documented_keys(tiny_llama_dir):
    result = tokenloom(
        "generate", "The cat sat on the", "--model", str(tiny_llama_dir), "--temperature", "0",
        "--max-tokens", "8", "--json",
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert set(out) == {"text", "token_ids", "finish_reason", "stop_reason", "prompt_tokens", "completion_tokens",
                        "logprobs"}
    assert out["completion_tokens"] == len(out["token_ids"]) and out["finish_reason"] in ("length", "eos")
    assert out["finish_reason"] == "eos" or out["completion_tokens"] == 8
    assert out["logprobs"] is None  # not asked for
    assert out["stop_reason"] == (0 if out["finish_reason"] == "eos" else None)  # the tiny model's EOS id is 0


def test_generate_json_with_n_gives_a_list(tiny_llama_dir):
    result = tokenloom("generate", "Hi", "--model", str(tiny_llama_dir), "-n", "2", "--seed", "1", "--max-tokens", "4", "--json")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["generate", "Hi", "--top-p", "1.5"], "top_p must be in (0, 1], got 1.5"),
        (["generate", "Hi", "--temperature", "-1"], "temperature"),
        (["generate", "", "--max-tokens", "3"], "prompt is empty"),
        (["next", "Hi", "--model", "no-such-model"], "unknown model 'no-such-model'"),
        (["generate", "Hi", "--max-tokens", "0"], "max_tokens"),
    ],
)
def test_bad_input_gives_one_line_and_exit_code_2(tiny_llama_dir, args, message):
    if "--model" not in args:
        args = [*args, "--model", str(tiny_llama_dir)]
    result = tokenloom(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr


def test_demo_runs_and_writes_its_plot(tmp_path):
    result = tokenloom("demo", "--out", str(tmp_path / "demo.png"), "--max-tokens", "12", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for heading in ("P(next token", "greedy", "top-p (p=0.9)", "T=1.5", "99.32%", "0.67%", "0.01%"):
        assert heading in result.stdout
    assert (tmp_path / "demo.png").stat().st_size > 10_000


def test_generate_with_beams_prints_every_hypothesis_best_first(tiny_llama_dir):
    result = tokenloom("generate", "The cat", "--model", str(tiny_llama_dir), "--beams", "3", "--max-tokens", "5",
                       "--length-penalty", "0.5", "--early-stopping", "never", "--json")
    assert result.returncode == 0, result.stderr
    beams = json.loads(result.stdout)
    assert len(beams) == 3 and {"text", "token_ids", "score", "logprob", "finish_reason"} <= set(beams[0])
    assert [b["score"] for b in beams] == sorted((b["score"] for b in beams), reverse=True)
    import tokenloom as tl

    lm = tl.load(str(tiny_llama_dir))
    assert beams == [b.to_dict() for b in lm.beam_search("The cat", 3, 5, 0.5, "never")]


@pytest.mark.parametrize("args, message", [
    (["--beams", "2", "--temperature", "0.5"], "--beams runs beam search, which takes --max-tokens"),
    (["--beams", "2", "--early-stopping", "soon"], "--early-stopping must be false, true or never, got 'soon'"),
])
def test_bad_beam_flags_say_what_is_allowed(tiny_llama_dir, args, message):
    result = tokenloom("generate", "Hi", "--model", str(tiny_llama_dir), *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_generate_speculative_gives_the_plain_greedy_tokens(tiny_llama_dir):
    args = ["generate", "The cat sat on the mat. The cat sat on the", "--model", str(tiny_llama_dir),
            "--temperature", "0", "--max-tokens", "12", "--json"]
    plain = tokenloom(*args)
    fast = tokenloom(*args, "--speculative", "ngram", "--draft-tokens", "3")
    assert plain.returncode == 0 and fast.returncode == 0, fast.stderr
    assert json.loads(fast.stdout)["token_ids"] == json.loads(plain.stdout)["token_ids"]
    bad = tokenloom(*args, "--speculative", "medusa")
    assert bad.returncode == 2 and "speculative must be one of ngram (or None), got 'medusa'" in bad.stderr
