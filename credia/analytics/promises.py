"""Promise-kept rate: whether customers paid what they promised, from core banking's settled promises.

A conversation only shows that a promise was *made* (goal ``promise_created``); whether it was kept is known
later, by core banking, which settles every promise as kept (payments from the day it was made to its date
covered the amount) or broken (its date passed without that). So this figure is read from core banking
(``GET /promises``, through ``credia.backends.core_banking``) rather than from the tracker store:

    promise-kept rate = promises kept ÷ promises due, where due = kept + broken (settled);

pending promises are not yet due and are only counted apart. Promises are selected by the day they were made
(the lender's time zone) and the channel they were made on; under a journey filter, only for collections.
When core banking cannot be reached the figure is unavailable, never an error of the whole report.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from credia.analytics.sessions import COLLECTIONS
from credia.backends import BackendError
from credia.backends.core_banking import CoreBankingClient

if TYPE_CHECKING:
    from credia.analytics.metrics import Filters

KEPT, BROKEN, PENDING = "kept", "broken", "pending"
T = TypeVar("T")
TIMEOUT_SECONDS = 3.0  # a report or a dashboard refresh must not hang on a core banking that does not answer


def promise_outcomes(promises: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Counts of promises by status and the kept rate (``None`` while nothing is due)."""
    statuses = Counter(str(promise.get("status")) for promise in promises)
    due = statuses[KEPT] + statuses[BROKEN]
    return {
        "available": True,
        "count": statuses[KEPT],
        "of": due,
        "rate": statuses[KEPT] / due if due else None,
        "broken": statuses[BROKEN],
        "pending": statuses[PENDING],
    }


def unavailable(reason: str) -> dict[str, Any]:
    """What the report shows when core banking could not be read."""
    return {"available": False, "reason": reason}


def promise_kept(core_banking_url: str | None, filters: Filters) -> dict[str, Any]:
    """The promise-kept figures for the report's filters, or why they are unavailable."""
    if not core_banking_url:
        return unavailable("no core-banking URL configured")
    if filters.journey not in (None, COLLECTIONS):
        return promise_outcomes([])  # promises belong to collections: none in another journey
    client = CoreBankingClient(core_banking_url, timeout=TIMEOUT_SECONDS, retries=0)
    try:
        promises = _run(client.promises(filters.start, filters.end, filters.channel))
    except BackendError as exc:
        return unavailable(str(exc))
    if not isinstance(promises, list):
        return unavailable("core-banking: GET /promises did not answer a list")
    return promise_outcomes(promises)


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run the client's coroutine from synchronous code, also when this thread already runs an event loop (a
    caller inside an async framework): then in a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
