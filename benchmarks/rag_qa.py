"""Retrieval-augmented QA on SQuAD v1.1 (XQuAD English, 240 paragraphs, 1,190 questions).

    python benchmarks/rag_qa.py                 # seeded subset (--limit 24 answerable + 24 unanswerable)
    python benchmarks/rag_qa.py --limit 0       # every test question
    python benchmarks/rag_qa.py --calibrate     # thresholds for tokenloom.rag.ask, from calibration paragraphs

Paragraphs are shuffled with --seed and split three ways:
  P[0:40]    removed from store B: their ~200 questions are the unanswerable (NoAns) test set;
  P[40:80]   calibration: answerable in store A, unanswerable in store C (A without them);
  P[80:240]  their questions are the answerable (HasAns) test set, asked of store A (all 240).
Retrieval recall@1/@5 uses all 1,190 questions on store A (the gold paragraph among the top chunks).

Answers come as tokenloom.rag.ask gives them by default: the best sentence of the k chunks
retrieved, and the span of it the model scores highest (extractive; --free lets the model
write its answer instead). Generation settings: closed book (the model writes its answer);
retrieval (plain: answer whatever the scores); retrieval +
abstention (the thresholds of tokenloom.rag.ask); + reject sampling (N=4); + verification;
+ hedging (the hedge prompt, no thresholds). Answerable: EM, F1 (SQuAD normalisation), answer
contained; an abstention scores 0. The answer is scored without its citation
markers ("1542 [1]" -> "1542"). Unanswerable: the answered rate is the hallucination rate.

Calibration rule (--calibrate): min_retrieval keeps 95% of answerable calibration questions;
min_support and min_logprob keep 90% of the correct calibration answers (gold answer
contained); each is the corresponding percentile, rounded down to 0.05.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rich.progress import Progress  # noqa: E402
from serve_report import cpu_line  # noqa: E402

import tokenloom as tl  # noqa: E402
from tokenloom.metrics.squad import best_of, contains_answer, exact_match, token_f1  # noqa: E402
from tokenloom.rag.ask import AskConfig, decide, generate, retrieve, verify  # noqa: E402
from tokenloom.rag.readers import Document  # noqa: E402
from tokenloom.rag.store import Store  # noqa: E402
from tokenloom.rag.support import strip_citations  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "shared" / "data" / "squad_v1_dev_xquad_en" / "xquad_en_flat.jsonl"
if not DATA.exists():
    DATA = Path("/work/shared/data/squad_v1_dev_xquad_en/xquad_en_flat.jsonl")
BATCH = 16  # questions submitted to the scheduler together


def load_rows() -> list[dict]:
    return [json.loads(line) for line in DATA.read_text().splitlines()]


def key(row: dict) -> str:
    return f"{row['title']}#{row['paragraph_index']}"


def build_stores(rows, folder: Path, removed_test: set, removed_calib: set) -> dict[str, Store]:
    paragraphs = {key(r): r for r in rows}
    a = Store(folder / "a.db")
    a.ingest([Document(r["context"], k, r["title"]) for k, r in paragraphs.items()])
    a.close()
    stores = {"A": Store(folder / "a.db")}
    for name, removed in (("B", removed_test), ("C", removed_calib)):
        shutil.copy(folder / "a.db", folder / f"{name}.db")
        stores[name] = Store(folder / f"{name}.db", embedder=stores["A"].embedder)
        stores[name].remove(removed)
    return stores


def recall(store: Store, rows, progress) -> dict:
    keys = dict(store.db.execute("SELECT id, key FROM documents"))
    out = {}
    task = progress.add_task("retrieval recall", total=3 * len(rows))
    for mode in ("bm25", "dense", "hybrid"):
        at1 = at5 = 0
        for row in rows:
            found = [keys[h.document_id] for h in store.search(row["question"], k=5, mode=mode)]
            at1 += found[:1] == [key(row)]
            at5 += key(row) in found
            progress.advance(task)
        out[mode] = {"recall@1": at1 / len(rows), "recall@5": at5 / len(rows)}
    return out


def generations(lm, store, rows, config, progress, label) -> list:
    """(hits, retrieval score, candidates) per row, generated BATCH questions at a time."""
    out = []
    task = progress.add_task(label, total=len(rows))
    for start in range(0, len(rows), BATCH):
        questions = [r["question"] for r in rows[start:start + BATCH]]
        found = retrieve(store, questions, config)
        texts = generate(lm, questions, [h for h, _ in found], config)
        out.extend((h, s, t) for (h, s), t in zip(found, texts))
        progress.advance(task, len(questions))
    return out


def answers_for(store, rows, gens, config) -> list:
    answers = []
    for row, (hits, score, texts) in zip(rows, gens):
        answer = decide(store, row["question"], hits, score, texts, config)
        if config.verify:
            verify(store, answer, hits, config)
        answers.append(answer)
    return answers


def has_ans(rows, answers) -> dict:
    n = len(rows)
    pick = lambda metric: sum(0.0 if a.abstained else best_of(metric, strip_citations(a.answer), r["answers"]["text"])  # noqa: E731
                              for r, a in zip(rows, answers)) / n
    return {"EM": 100 * pick(exact_match), "F1": 100 * pick(token_f1), "contains": 100 * pick(contains_answer),
            "answered": 100 * sum(not a.abstained for a in answers) / n}


def run_settings(lm, stores, answerable, unanswerable, k, progress, base) -> dict:
    plain = AskConfig(**base, k=k, abstain=False)
    specs = {  # setting: (config for generation, config for the decision)
        "closed book": (AskConfig(**base, closed_book=True), AskConfig(**base, closed_book=True)),
        "retrieval": (plain, plain),
        "retrieval + abstention": (plain, AskConfig(**base, k=k)),
        "retrieval + reject sampling (N=4)": (AskConfig(**base, k=k, samples=4), AskConfig(**base, k=k, samples=4)),
        "retrieval + verification": (plain, AskConfig(**base, k=k, verify=True)),
        "retrieval + hedging": (AskConfig(**base, k=k, hedge=True, abstain=False), AskConfig(**base, k=k, hedge=True, abstain=False)),
    }
    cache, results, kept = {}, {}, {}
    for name, (gen_config, decide_config) in specs.items():
        row = {}
        for split, rows, store in (("HasAns", answerable, stores["A"]), ("NoAns", unanswerable, stores["B"])):
            slot = (gen_config, split)
            if slot not in cache:
                cache[slot] = generations(lm, store, rows, gen_config, progress, f"{name} ({split})")
            answers = answers_for(store, rows, cache[slot], decide_config)
            kept[(name, split)] = answers
            if split == "HasAns":
                row.update(has_ans(rows, answers))
            else:
                row["hallucination"] = 100 * sum(not a.abstained for a in answers) / len(rows)
        n_a, n_n = len(answerable), len(unanswerable)
        row["NoAns acc"] = 100 - row["hallucination"]
        row["overall EM (SQuAD 2.0)"] = (row["EM"] * n_a + row["NoAns acc"] * n_n) / (n_a + n_n)
        results[name] = row
    return results, kept


def coverage_curve(answerable, kept, png: Path, base: dict) -> list:
    """Coverage and accuracy (gold contained, NoAns answered = wrong) as the mean log-probability
    threshold of `ask` rises, above the retrieval floor."""
    points = []
    pairs = [(a.mean_logprob, a.retrieval_score, best_of(contains_answer, strip_citations(a.answer), r["answers"]["text"]))
             for r, a in zip(answerable, kept[("retrieval", "HasAns")])]
    pairs += [(a.mean_logprob, a.retrieval_score, 0.0) for a in kept[("retrieval", "NoAns")]]
    floor = AskConfig(**base).min_retrieval
    for threshold in [-6 + t / 4 for t in range(0, 25)]:
        answered = [c for lp, r, c in pairs if lp is not None and lp >= threshold and r >= floor]
        points.append({"threshold": threshold, "coverage": len(answered) / len(pairs),
                       "accuracy": sum(answered) / len(answered) if answered else None})
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [p["coverage"] for p in points if p["accuracy"] is not None]
    ys = [p["accuracy"] for p in points if p["accuracy"] is not None]
    plt.figure(figsize=(5, 4))
    plt.plot(xs, ys, marker="o")
    plt.xlabel("coverage (share answered, HasAns + NoAns)")
    plt.ylabel("accuracy of answered (gold contained)")
    plt.title("SmolLM2-135M + retrieval: log-probability floor −6 to 0", fontsize=10)
    plt.grid(alpha=0.3)
    plt.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    plt.savefig(png, dpi=120)
    return points


def consistency_auroc(answerable, kept) -> dict:
    """Sample consistency (mean pairwise token F1 of the N=4 samples) as a hallucination signal:
    AUROC of "right" (the kept candidate contains the gold answer) against "wrong" (it does
    not, or the question has no answer in the store), over every question of the setting."""
    name = "retrieval + reject sampling (N=4)"
    right, wrong = [], []
    for r, a in zip(answerable, kept[(name, "HasAns")]):
        if a.consistency is not None:
            (right if best_of(contains_answer, strip_citations(a.raw), r["answers"]["text"]) else wrong).append(
                a.consistency)
    wrong += [a.consistency for a in kept[(name, "NoAns")] if a.consistency is not None]
    return {"auroc": auc(right, wrong), "right": len(right), "wrong": len(wrong)}


def percentile(values, q) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, int(q * len(values))))] if values else float("nan")


def auc(positives, negatives) -> float:
    """P(a positive scores above a negative), ties half."""
    if not positives or not negatives:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def calibrate(lm, stores, rows_a, progress, k, base) -> dict:
    plain = AskConfig(**base, k=k, abstain=False)
    gens_a = generations(lm, stores["A"], rows_a, plain, progress, "calibration (answerable)")
    gens_c = generations(lm, stores["C"], rows_a, plain, progress, "calibration (unanswerable)")
    ans_a, ans_c = answers_for(stores["A"], rows_a, gens_a, plain), answers_for(stores["C"], rows_a, gens_c, plain)
    correct = [a for r, a in zip(rows_a, ans_a) if not a.abstained
               and best_of(contains_answer, strip_citations(a.answer), r["answers"]["text"])]
    wrong_c = [a for a in ans_c if not a.abstained]
    floor = lambda x: int(x * 20) / 20  # noqa: E731
    signals = {"support (cosine)": lambda a: a.support, "overlap": lambda a: a.candidates[0]["overlap"],
               "mean logprob": lambda a: a.mean_logprob, "retrieval": lambda a: a.retrieval_score}
    return {
        "answerable": len(rows_a), "correct": len(correct), "unanswerable answered": len(wrong_c),
        "min_retrieval": floor(percentile([a.retrieval_score for a in ans_a], 0.05)),
        "min_support": floor(percentile([a.support for a in correct], 0.10)),
        "min_logprob": floor(percentile([a.mean_logprob for a in correct], 0.10)),
        "auc correct vs NoAns-answered": {n: auc([f(a) for a in correct], [f(a) for a in wrong_c])
                                          for n, f in signals.items()},
        "retrieval cosine, answerable vs unanswerable": auc([a.retrieval_score for a in ans_a],
                                                            [a.retrieval_score for a in ans_c]),
    }


def table(results: dict) -> str:
    cols = ["EM", "F1", "contains", "answered", "hallucination", "overall EM (SQuAD 2.0)"]
    lines = ["| setting | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    lines += [f"| {name} | " + " | ".join(f"{row[c]:.1f}" for c in cols) + " |" for name, row in results.items()]
    return "\n".join(lines)


def targets(results, retrieval) -> list[str]:
    best_single = max(retrieval["bm25"]["recall@5"], retrieval["dense"]["recall@5"])
    plain, abst = results["retrieval"], results["retrieval + abstention"]
    checks = [
        ("retrieval raises EM over closed book by >= 20 points",
         plain["EM"] - results["closed book"]["EM"] >= 20, f"{plain['EM'] - results['closed book']['EM']:+.1f}"),
        ("hybrid recall@5 >= max(bm25, dense)", retrieval["hybrid"]["recall@5"] >= best_single,
         f"{retrieval['hybrid']['recall@5']:.3f} vs {best_single:.3f}"),
        ("abstention at least halves the hallucination rate", abst["hallucination"] <= plain["hallucination"] / 2,
         f"{plain['hallucination']:.1f}% -> {abst['hallucination']:.1f}%"),
        ("abstention costs at most 5 points of EM", plain["EM"] - abst["EM"] <= 5,
         f"{plain['EM']:.1f} -> {abst['EM']:.1f}"),
    ]
    return [f"- {'met' if ok else 'MISSED'}: {text} ({detail})" for text, ok, detail in checks]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=24, help="questions per test set (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k", type=int, default=2, help="chunks retrieved per question (their best sentence is shown)")
    parser.add_argument("--style", choices=["chat", "short"], default="short", help="prompt style (tokenloom.rag.prompt)")
    parser.add_argument("--free", action="store_true", help="written answers from whole chunks (no excerpt, no spans)")
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("rag_qa.json"))
    parser.add_argument("--png", type=Path, default=Path("rag_qa_coverage.png"))
    args = parser.parse_args()
    print(cpu_line())
    base = dict(style=args.style, **(dict(sentences=0, extractive=False) if args.free else {}))
    rows = load_rows()
    paragraphs = sorted({key(r) for r in rows})
    random.Random(args.seed).shuffle(paragraphs)
    removed_test, calib = set(paragraphs[:40]), set(paragraphs[40:80])
    pick = lambda rs: rs if args.limit == 0 else random.Random(args.seed).sample(rs, min(args.limit, len(rs)))  # noqa
    answerable = pick([r for r in rows if key(r) in set(paragraphs[80:])])
    unanswerable = pick([r for r in rows if key(r) in removed_test])
    started = time.time()
    with tempfile.TemporaryDirectory() as folder, Progress() as progress:
        stores = build_stores(rows, Path(folder), removed_test, calib)
        lm = tl.load("smollm2-135m-instruct")
        if args.calibrate:
            result = calibrate(lm, stores, pick([r for r in rows if key(r) in calib]), progress, args.k, base)
            print(json.dumps(result, indent=2))
            return
        retrieval = recall(stores["A"], rows, progress)
        results, kept = run_settings(lm, stores, answerable, unanswerable, args.k, progress, base)
        try:
            curve = coverage_curve(answerable, kept, args.png, base)
        except OSError as exc:  # the figures below still print
            print(f"could not write the plot {args.png}: {exc}")
            curve = []
    print(f"\n{len(answerable)} answerable + {len(unanswerable)} unanswerable questions, k={args.k}, "
          f"seed {args.seed}; {time.time() - started:.0f} s\n")
    print("| retrieval (1,190 questions) | recall@1 | recall@5 |\n|---|---:|---:|")
    for mode, r in retrieval.items():
        print(f"| {mode} | {r['recall@1']:.3f} | {r['recall@5']:.3f} |")
    print("\n" + table(results) + "\n")
    agreement = consistency_auroc(answerable, kept)
    print(f"sample consistency (N=4) telling right answers from wrong ones: AUROC {agreement['auroc']:.3f} "
          f"({agreement['right']} right, {agreement['wrong']} wrong)\n")
    print("\n".join(targets(results, retrieval)))
    args.out.write_text(json.dumps({"retrieval": retrieval, "settings": results, "coverage": curve,
                                    "consistency": agreement,
                                    "limit": args.limit, "seed": args.seed, "k": args.k,
                                    "thresholds": AskConfig(**base).__dict__}, indent=2, default=str))
    print(f"\nwrote {args.out} and {args.png}")


if __name__ == "__main__":
    main()
