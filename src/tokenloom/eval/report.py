"""Labelled data in, accuracy out: TSV reading and the classification report.

    accuracy          = (1/n) Σ [pred_i = gold_i]     (an unlabelled answer counts as wrong)
    F1_c              = 2·TP_c / (2·TP_c + FP_c + FN_c)
    macro_f1          = (1/C) Σ_c F1_c
    majority_baseline = max_c n_c / n                 (always answer the commonest class)

    gold = [a, a, b], pred = [a, b, b]: accuracy 2/3, F1_a = 2/3, F1_b = 2/3,
    macro_f1 = 2/3, majority_baseline = 2/3.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from tokenloom.errors import InvalidArgument


def read_labelled_tsv(
    path: str | Path, text_column: str, label_column: str, labels: list[str]
) -> tuple[list[str], list[str]]:
    """(texts, gold labels). A gold value is a label name, or an index into `labels` (SST-2's 0/1)."""
    path = Path(path)
    if not path.is_file():
        raise InvalidArgument(f"{path} is not a file")
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        columns = reader.fieldnames or []
        missing = [c for c in (text_column, label_column) if c not in columns]
        if missing:
            raise InvalidArgument(f"{path} has no column {', '.join(map(repr, missing))}; its columns: {columns}")
        rows = list(reader)
    if not rows:
        raise InvalidArgument(f"{path} has no rows")
    texts = [row[text_column].strip() for row in rows]
    return texts, [gold_label(row[label_column], labels, i) for i, row in enumerate(rows)]


def gold_label(value: str, labels: list[str], row: int) -> str:
    value = (value or "").strip()
    if value in labels:
        return value
    if value.isdigit() and int(value) < len(labels):
        return labels[int(value)]
    raise InvalidArgument(f"row {row}: label {value!r} is neither one of {labels} nor an index 0..{len(labels) - 1}")


@dataclass(frozen=True)
class ClassificationReport:
    accuracy: float
    macro_f1: float
    majority_baseline: float
    confusion: dict[str, dict[str, int]]  # gold -> predicted ("none" when no label) -> count
    n: int
    no_label: int  # answers that named no label (generation)
    method: str

    def to_dict(self) -> dict:
        return asdict(self)


def report(gold: list[str], predicted: list[str | None], labels: list[str], method: str = "") -> ClassificationReport:
    """Accuracy, macro-F1, confusion matrix and the majority-class baseline."""
    if len(gold) != len(predicted) or not gold:
        raise InvalidArgument(f"need as many predictions as gold labels (got {len(predicted)} and {len(gold)})")
    columns = labels + (["none"] if None in predicted else [])
    confusion = {g: {p: 0 for p in columns} for g in labels}
    for g, p in zip(gold, predicted):
        confusion[g][p if p is not None else "none"] += 1
    f1 = []
    for c in labels:
        tp = confusion[c][c]
        fp = sum(confusion[g][c] for g in labels if g != c)
        fn = sum(confusion[c].values()) - tp
        f1.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    n = len(gold)
    return ClassificationReport(
        accuracy=sum(g == p for g, p in zip(gold, predicted)) / n,
        macro_f1=sum(f1) / len(f1),
        majority_baseline=max(Counter(gold).values()) / n,
        confusion=confusion, n=n, no_label=sum(p is None for p in predicted), method=method,
    )
