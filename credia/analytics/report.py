"""The metrics report as Markdown tables, from the same plain data the JSON output prints."""

from __future__ import annotations

from typing import Any, Optional

from credia.identity import country_profile
from credia.money import format_money

UNAVAILABLE = "no disponible"
JOURNEY_LABELS = {
    "credit": "credit application",
    "simulation": "loan simulation",
    "status": "application status",
    "collections": "collections",
}


def percent(rate: Optional[float]) -> str:
    return "—" if rate is None else f"{rate * 100:.1f} %"


def duration(seconds: Optional[float]) -> str:
    """``75.2`` → ``1 min 15 s``: completion times are read by people, not parsed."""
    if seconds is None:
        return "—"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    return [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
        *("| " + " | ".join(cell(value) for value in row) + " |" for row in rows),
        "",
    ]


def _share(part: dict[str, Any], of_what: str = "") -> list[Any]:
    return [percent(part["rate"]), f"{part['count']} of {part['of']}{of_what}"]


def _kept(figures: Optional[dict[str, Any]]) -> list[Any]:
    """Core banking's figure, or "no disponible" with the reason when it could not be read."""
    if not figures or not figures.get("available"):
        reason = (figures or {}).get("reason", "not computed")
        return [UNAVAILABLE, f"core banking: {reason}"]
    return _share(figures, f" promises due ({figures['pending']} pending)")


def render_markdown(report: dict[str, Any]) -> str:
    """Every section of ``metrics.compute_report``'s result, in the order an operations team reads them."""
    filters = report["filters"]
    scope = ", ".join([
        f"from {filters['from'] or 'the first session'} to {filters['to'] or 'the last'} ({filters['time_zone']})",
        f"channel: {filters['channel'] or 'all'}",
        f"journey: {filters['journey'] or 'all'}",
    ])
    lines = ["# Assistant metrics", "", f"Sessions {scope}.", "", "## Sessions", ""]
    lines += _table(["metric", "value", "count"], [
        ["sessions", report["sessions"], ""],
        ["containment", *_share(report["containment"], " without a handoff")],
        ["automatic resolution", *_share(report["automatic_resolution"], " reached a goal without a handoff")],
        ["handoff rate", *_share(report["handoff"])],
        ["abandonment", *_share(report["abandonment"], " sessions that started a journey")],
    ])
    if report["handoff"]["by_reason"]:
        lines += ["### Handoffs by reason", ""]
        lines += _table(["reason", "sessions"], [[r, n] for r, n in report["handoff"]["by_reason"].items()])

    lines += ["## Journeys", ""]
    lines += _table(["journey", "started", "completed", "completion rate", "median time", "p90 time"], [
        [
            JOURNEY_LABELS.get(name, name), journey["started"], journey["completed"],
            percent(journey["completion_rate"]), duration(journey["completion_seconds"]["median"]),
            duration(journey["completion_seconds"]["p90"]),
        ]
        for name, journey in report["journeys"].items()
    ])

    lines += ["## Forms", ""]
    if not report["forms"]:
        lines += ["No form was started.", ""]
    for form, funnel in report["forms"].items():
        summary = f"Sessions asked: {funnel['sessions']}; abandoned in it: {funnel['abandoned']}."
        lines += [f"### {form}", "", summary, ""]
        lines += _table(["field", "sessions asked", "abandoned sessions stopped here"], [
            [step["field"], step["asked"], step["stopped"]] for step in funnel["fields"]
        ])

    nlu = report["nlu"]
    lines += ["## Understanding (NLU)", ""]
    lines += _table(["metric", "value", "count"], [
        ["customer messages", nlu["messages"], ""],
        ["not understood", *_share(nlu["not_understood"])],
        [f"low confidence (< {nlu['threshold']:g})", *_share(nlu["low_confidence"])],
    ])
    if nlu["top_not_understood"]:
        lines += ["### Most frequent messages not understood", ""]
        lines += _table(["message", "times"], [[m["text"], m["count"]] for m in nlu["top_not_understood"]])

    collections = report["collections"]
    paid = collections["links_paid"]
    profile = country_profile()
    lines += ["## Collections", ""]
    lines += _table(["metric", "value", "count"], [
        ["verified contacts", collections["verified_contacts"], ""],
        ["promises to pay", collections["promises"], ""],
        ["promise-to-pay rate", *_share(collections["promise_to_pay_rate"], " verified contacts")],
        ["payment links sent", collections["links_sent"], ""],
        ["links paid", paid["count"], format_money(paid["amount"], profile.currency, profile.locale)],
        ["payment plans created", collections["plans_created"], ""],
        ["promise-kept rate", *_kept(collections.get("promise_kept"))],
    ])

    credit = report["credit"]
    lines += ["## Credit applications", ""]
    outcomes = [[outcome, count] for outcome, count in credit["applications_by_outcome"].items()]
    lines += _table(["outcome", "applications"], outcomes + [
        ["counter-offers accepted afterwards", credit["counter_offers_accepted"]]
    ])
    return "\n".join(lines)
