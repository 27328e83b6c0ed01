"""The conversation designer's loop: what customers wrote that the bot did not understand, ready to label.

Messages not understood (``nlu_fallback`` the bot did not take as a form's answer, or answered by
``action_default_fallback``) or understood with an intent confidence below the threshold are masked
(``credia.analytics.texts``), deduplicated by folded form and grouped under the intent the model predicted, as a
Rasa NLU YAML file. The grouping is the model's guess, not a label: the designer moves each example under the
intent it really is, or deletes it, and only then copies it into ``data/nlu/`` by hand (the export never writes
there itself).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable

from credia.analytics.metrics import DEFAULT_THRESHOLD, Filters
from credia.analytics.sessions import CustomerMessage, Session
from credia.analytics.texts import fold, mask_personal_data, tally


def review_groups(
    sessions: Iterable[Session], filters: Filters = Filters(), threshold: float = DEFAULT_THRESHOLD
) -> list[dict[str, Any]]:
    """Messages to label, grouped by predicted intent (largest group first); each distinct text in one group only,
    the intent predicted for it most often."""
    keyed = [
        (fold(mask_personal_data(message.text)), message)
        for session in sessions
        if filters.admits(session)
        for message in session.messages
        if not message.payload and (message.not_understood or message.confidence < threshold)
    ]
    keyed = [(key, message) for key, message in keyed if key]
    intents: dict[str, Counter[str]] = {}
    for key, message in keyed:
        intents.setdefault(key, Counter())[message.predicted or message.intent or "unknown"] += 1
    grouped: dict[str, list[CustomerMessage]] = {}
    for key, message in keyed:
        grouped.setdefault(intents[key].most_common(1)[0][0], []).append(message)
    groups = [
        {
            "intent": intent,
            "messages": len(members),
            "not_understood": sum(message.not_understood for message in members),
            "low_confidence": sum(message.confidence < threshold for message in members),
            "examples": [{"text": text, "count": count} for text, count in tally(m.text for m in members)],
        }
        for intent, members in grouped.items()
    ]
    return sorted(groups, key=lambda group: (-group["messages"], group["intent"]))


def render_nlu_yaml(groups: list[dict[str, Any]], threshold: float, generated_on: str) -> str:
    """The groups as a Rasa NLU training file, each group under a comment with its counts."""
    total = sum(group["messages"] for group in groups)
    distinct = sum(len(group["examples"]) for group in groups)
    lines = [
        "# Customer messages the assistant did not understand (nlu_fallback or action_default_fallback) or",
        f"# understood with an intent confidence below {threshold:g}: {total} messages, {distinct} distinct.",
        f"# Exported by `python -m credia.analytics export-nlu` on {generated_on}. Long numbers, dates and",
        "# e-mails are masked; examples are grouped by the intent the model PREDICTED, most frequent first.",
        "# To label: move each example under the intent it really is (or delete it), then copy it into",
        "# data/nlu/<topic>.yml and add a held-out variant to tests/nlu/.",
        'version: "3.1"',
    ]
    if not groups:
        return "\n".join(lines + ["nlu: []", ""])
    lines.append("nlu:")
    for group in groups:
        lines += [
            "",
            f"# predicted {group['intent']}: {group['messages']} messages, {len(group['examples'])} distinct "
            f"({group['not_understood']} not understood, {group['low_confidence']} below {threshold:g})",
            f"- intent: {group['intent']}",
            "  examples: |",
            *(f"    - {example['text']}" for example in group["examples"]),
        ]
    return "\n".join(lines) + "\n"
