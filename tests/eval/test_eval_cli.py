"""`tokenloom eval perplexity` and `tokenloom classify` through the CLI's main(), in process.

`tokenloom.load` is pointed at the session's model so that no test loads it again.
"""

from __future__ import annotations

import json
import sys

import pytest

import tokenloom
from tokenloom.app.cli import main


@pytest.fixture
def cli(smollm, monkeypatch, capsys):
    monkeypatch.setattr(tokenloom, "load", lambda *args, **kwargs: smollm)

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["tokenloom", *args])
        with pytest.raises(SystemExit) as exit_info:
            main()
        out = capsys.readouterr()
        return exit_info.value.code, out.out, out.err

    return run


def test_perplexity_json_keys_and_surprisal_files(cli, wiki_text, tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(wiki_text[:600], encoding="utf-8")
    code, out, err = cli("eval", "perplexity", str(path), "--context", "64", "--stride", "32", "--json",
                         "--html", str(tmp_path / "m.html"), "--png", str(tmp_path / "m.png"))
    assert code in (0, None), err
    data = json.loads(out)
    assert {"perplexity", "nll", "tokens", "bits_per_byte", "context", "stride"} <= set(data)
    assert (data["context"], data["stride"]) == (64, 32) and 1 < data["perplexity"] < 1000
    assert "<span" in (tmp_path / "m.html").read_text(encoding="utf-8") and (tmp_path / "m.png").stat().st_size > 0


@pytest.mark.parametrize(
    "content, options, message",
    [("", [], "empty"), ("x", [], "at least 2"), ("Some text.", ["--context", "100000"], "context")],
)
def test_bad_perplexity_input_is_one_line_and_exit_2(cli, tmp_path, content, options, message):
    path = tmp_path / "bad.txt"
    path.write_text(content, encoding="utf-8")
    code, out, err = cli("eval", "perplexity", str(path), *options)
    assert code == 2 and err.startswith("tokenloom: error:") and message in err and len(err.strip().splitlines()) == 1


def test_a_tsv_with_a_missing_column_exits_2(cli, tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("text\tlabel\ngood\t1\n", encoding="utf-8")
    code, _, err = cli("classify", "--data", str(path), "--labels", "negative,positive")
    assert code == 2 and "no column 'sentence'" in err


def test_classify_json_report_on_a_small_tsv(cli, tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("sentence\tlabel\na wonderful , moving film .\t1\na dull , awful mess .\t0\n", encoding="utf-8")
    code, out, err = cli("classify", "--data", str(path), "--labels", "negative,positive", "--json")
    assert code in (0, None), err
    data = json.loads(out)
    assert {"accuracy", "macro_f1", "majority_baseline", "confusion", "n"} <= set(data)
    assert data["n"] == 2 and data["majority_baseline"] == 0.5
    assert sum(sum(row.values()) for row in data["confusion"].values()) == 2
