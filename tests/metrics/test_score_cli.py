"""`tokenloom score ...`: JSON keys scripts rely on, numbers equal to the library, errors exit 2."""

import io
import json
import subprocess
import sys

import pytest
import sacrebleu

from tokenloom.app.cli import main
from tokenloom.metrics import rouge

HYPS = ["The cat sat on the mat.", "A dog barked at 3.5 cats!", "Nothing matches here"]
REFS = ["The cat sat on a mat.", "The dog barked at 3.5 cats.", "Totally different words"]


def run(monkeypatch, capsys, *args, stdin: bytes | None = None):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["tokenloom", "score", *args])
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.fixture
def files(tmp_path):
    hyp, ref = tmp_path / "hyp.txt", tmp_path / "ref.txt"
    hyp.write_text("\n".join(HYPS) + "\n", "utf-8")
    ref.write_text("\n".join(REFS) + "\n", "utf-8")
    return str(hyp), str(ref)


def test_bleu_json_has_the_documented_keys_and_sacrebleu_numbers(monkeypatch, capsys, files):
    code, out, _ = run(monkeypatch, capsys, "bleu", "--hyp", files[0], "--ref", files[1], "--json")
    result = json.loads(out)
    assert code == 0
    assert {"score", "precisions", "bp", "ratio", "hyp_len", "ref_len", "signature"} <= set(result)
    assert result["score"] == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS]).score, abs=1e-9)


def test_bleu_sentence_json_is_one_object_per_line(monkeypatch, capsys, files):
    code, out, _ = run(monkeypatch, capsys, "bleu", "--hyp", files[0], "--ref", files[1], "--sentence", "--json")
    scores = [item["score"] for item in json.loads(out)]
    assert code == 0
    assert scores == pytest.approx([sacrebleu.sentence_bleu(h, [r]).score for h, r in zip(HYPS, REFS)], abs=1e-9)


def test_bleu_verbose_prints_the_breakdown(monkeypatch, capsys, files):
    code, out, _ = run(monkeypatch, capsys, "bleu", "--hyp", files[0], "--ref", files[1], "--verbose")
    assert code == 0 and "clipping removed" in out and "p_4 =" in out


def test_hypotheses_can_come_from_standard_input(monkeypatch, capsys, files):
    data = ("\n".join(HYPS) + "\n").encode()
    code, out, _ = run(monkeypatch, capsys, "chrf", "--hyp", "-", "--ref", files[1], "--json", stdin=data)
    assert code == 0
    assert json.loads(out)["score"] == pytest.approx(sacrebleu.corpus_chrf(HYPS, [REFS]).score, abs=1e-9)


def test_rouge_json_is_one_object_per_type_with_corpus_means(monkeypatch, capsys, files):
    code, out, _ = run(monkeypatch, capsys, "rouge", "--hyp", files[0], "--ref", files[1], "--json", "--stem")
    result = json.loads(out)
    expected = rouge(HYPS, REFS, stem=True).to_dict()
    assert code == 0
    for kind in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
        assert result[kind] == pytest.approx(expected[kind])


def test_rouge_bootstrap_adds_low_mid_high(monkeypatch, capsys, files):
    code, out, _ = run(monkeypatch, capsys, "rouge", "--hyp", files[0], "--ref", files[1], "--json",
                       "--types", "rouge1", "--bootstrap", "50")
    interval = json.loads(out)["rouge1"]["interval"]
    assert code == 0 and interval["low"]["fmeasure"] <= interval["mid"]["fmeasure"] <= interval["high"]["fmeasure"]


def test_diversity_json_keys(monkeypatch, capsys, tmp_path):
    path = tmp_path / "samples.txt"
    path.write_text("a b c a b c a b c\nd e f g\n", "utf-8")
    code, out, _ = run(monkeypatch, capsys, "diversity", str(path), "--json")
    assert code == 0
    assert {"distinct_1", "distinct_2", "repetition_rate", "self_bleu"} <= set(json.loads(out))


def test_mismatched_line_counts_exit_2_naming_the_file_and_line(monkeypatch, capsys, files, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("one line\n", "utf-8")
    code, _, err = run(monkeypatch, capsys, "bleu", "--hyp", files[0], "--ref", str(short))
    assert code == 2
    assert err.startswith("tokenloom: error: ") and f"{short}: line 2:" in err and len(err.splitlines()) == 1


def test_invalid_utf8_exits_2_naming_the_line(monkeypatch, capsys, files, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\nfine\n\xff broken\n")
    code, _, err = run(monkeypatch, capsys, "rouge", "--hyp", str(bad), "--ref", files[1])
    assert code == 2 and f"{bad}: line 3: not valid UTF-8" in err


def test_empty_file_exits_2(monkeypatch, capsys, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    code, _, err = run(monkeypatch, capsys, "diversity", str(empty))
    assert code == 2 and f"{empty}: line 1: the file is empty" in err


def test_unknown_tokenizer_exits_2_listing_the_choices(monkeypatch, capsys, files):
    code, _, err = run(monkeypatch, capsys, "bleu", "--hyp", files[0], "--ref", files[1], "--tokenize", "zz")
    assert code == 2 and "13a, intl, char, none" in err


def test_unknown_option_is_a_usage_error_with_exit_2(monkeypatch, capsys, files):
    code, _, _ = run(monkeypatch, capsys, "bleu", "--hyp", files[0], "--ref", files[1], "--bogus")
    assert code == 2


@pytest.mark.slow
def test_installed_entry_point_prints_the_bleu_summary_line(files):
    result = subprocess.run([sys.executable, "-m", "tokenloom", "score", "bleu", "--hyp", files[0], "--ref", files[1]],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert result.stdout.startswith(sacrebleu.corpus_bleu(HYPS, [REFS]).format())


def test_unknown_rouge_type_exits_2_listing_the_allowed_ones(monkeypatch, capsys, files):
    code, _, err = run(monkeypatch, capsys, "rouge", "--hyp", files[0], "--ref", files[1], "--types", "rouge1,rouge10")
    assert code == 2 and "'rouge10'" in err and "rouge1 ... rouge9, rougeL, rougeLsum" in err
