"""SST-2 dev: a generative model as a zero-shot classifier against a discriminative baseline.

    python benchmarks/sst2_zero_shot_vs_tfidf.py                      # all 872 sentences, all methods
    python benchmarks/sst2_zero_shot_vs_tfidf.py --limit 100 --methods likelihood

Zero-shot methods (tokenloom.eval.classify; no labelled example is used): label
likelihood, per-token mean, contextual calibration, generate-then-parse. The
baseline is logistic regression on TF-IDF word uni- and bigrams (scikit-learn),
5-fold stratified cross-validation on the same sentences: every sentence is
predicted by a model trained on the other 4/5, so it uses about 700 labelled
examples per fold. Prints one markdown table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import tokenloom as tl
from tokenloom.eval.classify import DEFAULT_TEMPLATE, classify
from tokenloom.eval.report import read_labelled_tsv, report

SST2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2_dev" / "dev.tsv"
LABELS = ["negative", "positive"]


def tfidf_baseline(texts: list[str], gold: list[str], folds: int = 5):
    """(report, seconds to train all folds, labelled examples per fold)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline

    predicted: list[str | None] = [None] * len(texts)
    seconds, used = 0.0, []
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=0).split(texts, gold):
        model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), LogisticRegression(C=10.0, max_iter=1000))
        start = time.perf_counter()
        model.fit([texts[i] for i in train], [gold[i] for i in train])
        seconds += time.perf_counter() - start
        used.append(len(train))
        for i, label in zip(test, model.predict([texts[i] for i in test])):
            predicted[i] = str(label)
    return report(gold, predicted, LABELS, "tfidf-logreg"), seconds, sum(used) // len(used)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SST2)
    parser.add_argument("--limit", type=int, default=0, help="first N sentences only (0: all)")
    parser.add_argument("--methods", default="likelihood,mean,calibrated,generate")
    parser.add_argument("--template", default=DEFAULT_TEMPLATE)
    parser.add_argument("--generate-limit", type=int, default=0, help="the generate method on the first N only")
    args = parser.parse_args()

    texts, gold = read_labelled_tsv(args.data, "sentence", "label", LABELS)
    if args.limit:
        texts, gold = texts[: args.limit], gold[: args.limit]
    lm = tl.load()
    rows = []
    for method in args.methods.split(","):
        n = args.generate_limit if method == "generate" and args.generate_limit else len(texts)
        start = time.perf_counter()
        predicted = [c.label for c in classify(lm, texts[:n], LABELS, args.template, method)]
        r = report(gold[:n], predicted, LABELS, method)
        rows.append((f"zero-shot {method} (n = {n})", r, "0", f"{time.perf_counter() - start:.0f} s to predict"))
    r, seconds, used = tfidf_baseline(texts, gold)
    rows.append((f"TF-IDF + logistic regression, 5-fold CV (n = {len(texts)})", r, str(used), f"{seconds:.2f} s to train 5 folds"))

    print(f"SST-2 dev, n = {len(texts)}, majority baseline {rows[0][1].majority_baseline:.1%}; template {args.template!r}")
    print("| method | accuracy | macro-F1 | no label | labelled examples | time |")
    print("|---|---:|---:|---:|---:|---|")
    for name, r, used, timing in rows:
        print(f"| {name} | {r.accuracy:.1%} | {r.macro_f1:.3f} | {r.no_label} | {used} | {timing} |")


if __name__ == "__main__":
    main()
