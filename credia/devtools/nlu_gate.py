"""Fail when the NLU results on the held-out test set fall below the agreed thresholds.

Reads the ``intent_report.json`` that ``rasa test nlu --out DIR`` writes and checks the weighted F1
over all intents and the F1 of every single intent, so one intent cannot quietly collapse.

Usage: ``python -m credia.devtools.nlu_gate results/nlu --min-weighted-f1 0.85 --min-intent-f1 0.7``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SUMMARY_KEYS = {"accuracy", "macro avg", "weighted avg", "micro avg"}


def check(report: dict, min_weighted_f1: float, min_intent_f1: float) -> list[str]:
    """Return one message per threshold that is not met (empty when all pass)."""
    failures = []
    weighted = report["weighted avg"]["f1-score"]
    if weighted < min_weighted_f1:
        failures.append(f"weighted F1 {weighted:.3f} < {min_weighted_f1}")
    for intent, scores in sorted(report.items()):
        if intent in SUMMARY_KEYS or not isinstance(scores, dict) or not scores.get("support"):
            continue
        if scores["f1-score"] < min_intent_f1:
            failures.append(f"intent {intent}: F1 {scores['f1-score']:.3f} < {min_intent_f1}")
    return failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results_dir", type=Path)
    parser.add_argument("--min-weighted-f1", type=float, default=0.85)
    parser.add_argument("--min-intent-f1", type=float, default=0.70)
    args = parser.parse_args()
    report = json.loads((args.results_dir / "intent_report.json").read_text())
    print(f"NLU held-out: weighted F1 {report['weighted avg']['f1-score']:.3f}, accuracy {report['accuracy']:.3f}")
    failures = check(report, args.min_weighted_f1, args.min_intent_f1)
    for failure in failures:
        print(f"  FAIL {failure}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
