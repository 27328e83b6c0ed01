"""Fail when the NLU results on the held-out test set fall below the agreed thresholds.

Reads the reports that ``rasa test nlu --out DIR`` writes: the weighted F1 over all intents, the F1 of every
single intent (so one intent cannot quietly collapse), and the weighted F1 of the entities of each entity
extractor (DIET's learned entities, the rule-based Spanish value extractor).

Usage: ``python -m credia.devtools.nlu_gate results/nlu --min-weighted-f1 0.85 --min-intent-f1 0.7
--min-entity-f1 0.8``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from credia.settings import PROJECT_ROOT

SUMMARY_KEYS = {"accuracy", "macro avg", "weighted avg", "micro avg"}
NOT_ENTITY_REPORTS = {"intent_report.json", "response_selection_report.json"}


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


def owned_entity_types(extractor: str) -> frozenset[str]:
    """The entity types an extractor is responsible for; Rasa scores each extractor against all of them."""
    from credia.nlu.extractor import ENTITY_TYPES, SpanishValueExtractor

    if extractor == SpanishValueExtractor.__name__:
        return ENTITY_TYPES
    from rasa.shared.nlu.training_data.loading import load_data

    return frozenset(load_data(str(PROJECT_ROOT / "data" / "nlu")).entities)


def weighted_f1(report: dict, entity_types: frozenset[str]) -> float:
    """Support-weighted F1 over the rows (``amount``, ``amount.income``...) of the given entity types."""
    rows = [v for k, v in report.items() if isinstance(v, dict) and k.split(".")[0] in entity_types]
    support = sum(row["support"] for row in rows)
    return sum(row["f1-score"] * row["support"] for row in rows) / support if support else 1.0


def check_entities(results_dir: Path, min_entity_f1: float) -> list[str]:
    """One message per extractor whose weighted F1, over the entity types it owns, is below the threshold."""
    failures = []
    for path in sorted(results_dir.glob("*_report.json")):
        if path.name in NOT_ENTITY_REPORTS:
            continue
        report = json.loads(path.read_text())
        extractor = path.name.removesuffix("_report.json")
        weighted = weighted_f1(report, owned_entity_types(extractor))
        print(f"  entities by {extractor}: weighted F1 {weighted:.3f}")
        if weighted < min_entity_f1:
            failures.append(f"entities by {extractor}: F1 {weighted:.3f} < {min_entity_f1}")
    return failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results_dir", type=Path)
    parser.add_argument("--min-weighted-f1", type=float, default=0.85)
    parser.add_argument("--min-intent-f1", type=float, default=0.70)
    parser.add_argument("--min-entity-f1", type=float, default=0.80)
    args = parser.parse_args()
    report = json.loads((args.results_dir / "intent_report.json").read_text())
    print(f"NLU held-out: weighted F1 {report['weighted avg']['f1-score']:.3f}, accuracy {report['accuracy']:.3f}")
    failures = check(report, args.min_weighted_f1, args.min_intent_f1)
    failures += check_entities(args.results_dir, args.min_entity_f1)
    for failure in failures:
        print(f"  FAIL {failure}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
