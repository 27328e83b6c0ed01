"""The reminder scheduler: ``python -m credia.reminders [serve | run | dry-run | audit | purge]``.

- ``serve`` (the default, what ``./assistant start`` runs): a pass every ``REMINDERS_INTERVAL_SECONDS``, and the
  API on ``REMINDERS_HOST``:``REMINDERS_PORT`` (``/health``, ``/audit``);
- ``run [--at INSTANT] [--customer N ...]``: one pass now (or at a simulated instant), sending for real;
- ``dry-run --at INSTANT [--customer N ...]``: what would be sent then and why, sending and storing nothing;
- ``audit --customer N | --day YYYY-MM-DD [--json]``: the decisions kept;
- ``purge [--older-than-days N]``: delete decisions older than N days (never fewer than the policy's retention).

The clock is the real one, or starts at ``REMINDERS_NOW`` (an ISO instant with its offset) and runs from there.
It refuses to start (exit status 1, the reason on stderr) with a policy that does not validate.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import date, datetime, timedelta, timezone
from typing import List, Optional, Sequence

import uvicorn

from credia import logs, settings
from credia.analytics.sessions import tracker_store_url
from credia.credit.policy import PolicyError
from credia.money import format_money
from credia.reminders.api import SchedulerLoop, create_app
from credia.reminders.policy import RemindersPolicy, load_policy
from credia.reminders.scheduler import Clock, RunReport, Scheduler, fixed_clock, offset_clock, real_clock
from credia.reminders.sources import ConversationIndex, CoreBanking, Desk, Rasa
from credia.reminders.store import OUTCOME_SENT, ContactStore, Decision


def instant(text: str) -> datetime:
    """An ISO 8601 instant with its offset, e.g. 2026-12-07T10:00-05:00."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 instant such as 2026-12-07T10:00-05:00"
        ) from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs its UTC offset, e.g. 2026-12-07T10:00-05:00")
    return value


def day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day such as 2026-12-07") from None


def env_clock() -> Clock:
    start = os.environ.get("REMINDERS_NOW", "").strip()
    if not start:
        return real_clock
    try:
        return offset_clock(instant(start))
    except argparse.ArgumentTypeError as exc:
        raise SystemExit(f"reminders: REMINDERS_NOW: {exc}") from None


def build_scheduler(policy: RemindersPolicy, clock: Clock, store: ContactStore) -> Scheduler:
    """The scheduler wired to this run's services, from the environment."""
    desk_url = settings.env("DESK_URL", "")
    return Scheduler(
        policy=policy,
        store=store,
        bank=CoreBanking(settings.core_banking_url()),
        rasa=Rasa(settings.reminders_rasa_url(), os.environ.get("RASA_AUTH_TOKEN", "")),
        clock=clock,
        channels=ConversationIndex(tracker_store_url(settings.env("REMINDERS_TRACKER_DB", ""))),
        desk=Desk(desk_url, settings.env("DESK_API_TOKEN", "")) if desk_url else None,
        stale_after=timedelta(seconds=settings.env_float("REMINDERS_SENDING_STALE_SECONDS", 300)),
    )


def describe_decision(decision: Decision) -> str:
    contact = decision.contact
    what = (
        f"customer {contact.customer_id}, loan {contact.loan_id}, {contact.step} "
        f"({format_money(contact.due_amount, contact.currency)}, due {contact.due_date.isoformat()})"
    )
    where = f" by {decision.route.channel} to {decision.route.conversation_id}" if decision.route else ""
    label = {OUTCOME_SENT: "SEND"}.get(decision.outcome, decision.outcome.upper())
    why = decision.reason or ""
    if decision.rule:
        why = f"{why}: {decision.rule}" if why else decision.rule
    if decision.detail:
        why = f"{why} ({decision.detail})" if why else decision.detail
    return f"  {label:<8}{what}{where} — {why}"


def print_report(report: RunReport, dry_run: bool, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"at": report.at.isoformat(), "dry_run": dry_run, "errors": report.errors,
                          "decisions": [decision.as_json() for decision in report.decisions]},
                         ensure_ascii=False, indent=2))
        return
    note = " (dry run: nothing is sent or stored)" if dry_run else ""
    print(f"Reminders at {report.at.isoformat()}{note}")
    for decision in report.decisions:
        print(describe_decision(decision))
    if not report.decisions:
        print("  nothing is due")
    for error in report.errors:
        print(f"  error: {error}")


def require_rasa_token() -> None:
    """Reminders are said through Rasa's token-protected API: without the token nothing could go out."""
    if not os.environ.get("RASA_AUTH_TOKEN"):
        raise SystemExit("reminders: RASA_AUTH_TOKEN is not set; the launcher sets it, or export your own.")


def serve(policy: RemindersPolicy) -> None:
    require_rasa_token()
    store = ContactStore(settings.reminders_database_url())
    loop = SchedulerLoop(
        build_scheduler(policy, env_clock(), store),
        settings.env_float("REMINDERS_INTERVAL_SECONDS", 60),
        policy.audit_retention_days,
    )
    uvicorn.run(
        create_app(store, settings.reminders_api_token(), loop),
        host=settings.env("REMINDERS_HOST", "127.0.0.1"),
        port=settings.env_int("REMINDERS_PORT", 8004),
        log_level=settings.env("REMINDERS_LOG_LEVEL", "info"),
        ws="none",
    )


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m credia.reminders", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the scheduler and its API (the default)")
    for name, help_text in (("run", "one pass, sending for real"), ("dry-run", "what would be sent, and why")):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--at", type=instant, required=name == "dry-run",
                             help="the instant, e.g. 2026-12-07T10:00-05:00 (run: default now)")
        command.add_argument("--customer", type=int, action="append", help="only this customer (repeatable)")
        command.add_argument("--json", action="store_true")
    audit = commands.add_parser("audit", help="list the decisions kept")
    which = audit.add_mutually_exclusive_group(required=True)
    which.add_argument("--customer", type=int)
    which.add_argument("--day", type=day, help="the customer's local day, YYYY-MM-DD")
    audit.add_argument("--json", action="store_true")
    purge = commands.add_parser("purge", help="delete decisions older than the retention")
    purge.add_argument("--older-than-days", type=int)
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logs.install()  # no customer data in this process's log
    try:
        policy = load_policy()
    except PolicyError as exc:
        raise SystemExit(f"reminders: invalid reminders policy: {exc}") from None
    if args.command in (None, "serve"):
        serve(policy)
        return
    store = ContactStore(settings.reminders_database_url())
    try:
        if args.command in ("run", "dry-run"):
            if args.command == "run":
                require_rasa_token()
            clock = fixed_clock(args.at) if args.at else env_clock()
            report = build_scheduler(policy, clock, store).run(args.command == "dry-run", args.customer)
            print_report(report, args.command == "dry-run", args.json)
            if report.errors:
                sys.exit(1)
        elif args.command == "audit":
            rows = store.decisions(customer_id=args.customer, day=args.day, limit=100_000)
            print_audit(rows, args.json)
        else:
            days = args.older_than_days or policy.audit_retention_days
            if days < policy.audit_retention_days:
                raise SystemExit(f"reminders: the audit is kept at least {policy.audit_retention_days} days")
            removed = store.purge(datetime.now(timezone.utc) - timedelta(days=days))
            print(f"Deleted {removed} decisions older than {days} days.")
    finally:
        store.close()


def print_audit(rows: List[dict], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not rows:
        print("No decisions.")
    for row in rows:
        channel = f" {row['channel']}:{row['conversation_id']}" if row["channel"] else ""
        reason = f" {row['reason']}" if row["reason"] else ""
        rule = f" — {row['rule']}" if row["rule"] else ""
        detail = f" ({row['detail']})" if row["detail"] else ""
        print(f"{row['decided_at']}  customer {row['customer_id']}  loan {row['loan_id']}  {row['step']:<18} "
              f"{row['outcome']}{reason}{channel}{rule}{detail}")


if __name__ == "__main__":
    main()
