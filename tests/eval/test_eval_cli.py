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


def test_perplexity_task_wikitext_reads_a_raw_file_and_counts_the_raw_pages(cli, tmp_path):
    from tokenloom.eval import perplexity

    data = tmp_path / "pages.raw"
    data.write_text(" = Tea = \n \n Tea is a drink . \n\n = Rain = \n \n Rain fell , 2 @,@ 000 times . \n", "utf-8")
    code, out, err = cli("eval", "perplexity", "--task", "wikitext", "--data", str(data), "--limit", "1", "--json")
    assert code in (0, None), err
    got = json.loads(out)
    expected = perplexity(tokenloom.load(), task="wikitext", data=data, limit=1)
    assert got["word_perplexity"] == expected.word_perplexity and "task:wikitext|data:pages.raw" in got["signature"]
    assert "texts:1" in got["signature"] and "bos:<|im_start|>" in got["signature"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--task", "lambada"], "unknown task 'lambada'; tasks: wikitext"),
        (["--task", "wikitext", "--split", "dev"], "splits: train, validation, test"),
        (["--task", "wikitext", "--data", "/no/such.raw"], "/no/such.raw is not a file"),
        (["--limit", "3"], "give a text FILE to score, or --task wikitext"),
        (["FILE", "--limit", "3"], "--limit goes with --task wikitext"),
        (["FILE", "--task", "wikitext"], "reads its pages from --data FILE"),
    ],
)
def test_bad_task_flags_are_one_line_and_exit_2(cli, tmp_path, args, message):
    path = tmp_path / "t.txt"
    path.write_text("Some text to score here.", encoding="utf-8")
    args = [str(path) if a == "FILE" else a for a in args]
    code, _, err = cli("eval", "perplexity", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
