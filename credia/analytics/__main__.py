"""Command line of the metrics: ``python -m credia.analytics report|export-nlu [options]``.

``report`` prints every metric (Markdown tables, or JSON with the same numbers); ``export-nlu`` writes the
messages not understood as a Rasa NLU file to label. Both read the tracker store the launcher uses
(``$CREDIA_VAR_DIR/rasa_tracker.db``) unless ``--tracker-db`` names another (a URL or a SQLite file).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Optional, Sequence

from credia import settings
from credia.analytics.metrics import DEFAULT_THRESHOLD, Filters, build_report
from credia.analytics.nlu_review import render_nlu_yaml, review_groups
from credia.analytics.report import render_markdown
from credia.analytics.sessions import JOURNEYS, TrackerStoreError, read_sessions, tracker_store_url

TRAINING_DATA = settings.PROJECT_ROOT / "data"


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date like 2024-05-31") from None


def _threshold(value: str) -> float:
    number = float(value)
    if not 0 < number <= 1:
        raise argparse.ArgumentTypeError("the threshold is a confidence between 0 and 1")
    return number


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--from", dest="start", type=_day, help="first day (YYYY-MM-DD), by session start")
    common.add_argument("--to", dest="end", type=_day, help="last day (YYYY-MM-DD), inclusive")
    common.add_argument("--channel", help="only sessions on this channel (rest, socketio, whatsapp, ...)")
    common.add_argument("--journey", choices=JOURNEYS, help="only sessions that started this journey")
    common.add_argument(
        "--tracker-db", help="tracker store URL (sqlite:///..., postgresql://...) or SQLite file; "
        "default: $CREDIA_VAR_DIR/rasa_tracker.db"
    )
    common.add_argument(
        "--threshold", type=_threshold, default=DEFAULT_THRESHOLD,
        help=f"intent confidence below which a message counts as low confidence (default {DEFAULT_THRESHOLD})",
    )
    parser = argparse.ArgumentParser(prog="python -m credia.analytics", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", parents=[common], help="print the metrics")
    report.add_argument("--format", choices=("markdown", "json"), default="markdown")
    report.add_argument(
        "--core-banking-url", default=settings.core_banking_url(),
        help="core banking, for the promise-kept rate (default: $CORE_BANKING_URL or http://127.0.0.1:8001); "
        "when it does not answer the report says \"no disponible\"",
    )
    export = commands.add_parser("export-nlu", parents=[common], help="export messages not understood to label")
    export.add_argument("--out", type=Path, help="file to write (default: standard output); never inside data/")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.start and args.end and args.start > args.end:
        parser.error("--from is after --to")
    filters = Filters(start=args.start, end=args.end, channel=args.channel, journey=args.journey)
    url = tracker_store_url(args.tracker_db)
    if args.command == "export-nlu" and args.out and args.out.resolve().is_relative_to(TRAINING_DATA.resolve()):
        parser.error("export-nlu does not write into data/: write elsewhere, label, then copy examples by hand")
    try:
        if args.command == "report":
            report = build_report(url, filters, args.threshold, args.core_banking_url)
            as_json = args.format == "json"
            print(json.dumps(report, ensure_ascii=False, indent=2) if as_json else render_markdown(report))
            return 0
        groups = review_groups(read_sessions(url), filters, args.threshold)
    except TrackerStoreError as exc:
        print(exc, file=sys.stderr)
        return 1
    text = render_nlu_yaml(groups, args.threshold, datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"))
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        print(f"Wrote {sum(len(g['examples']) for g in groups)} messages to label to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
