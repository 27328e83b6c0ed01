"""The scheduler's small read-only HTTP API, and the loop that runs a pass every few seconds beside it.

``GET /health`` is open (the launcher waits on it); ``GET /audit?customer_id=&day=`` lists the decisions and
needs ``Authorization: Bearer <REMINDERS_API_TOKEN>``; without a configured token it answers 503, never openly.
"""

from __future__ import annotations

import hmac
import logging
import threading
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta
from typing import Any, AsyncIterator, Dict, List, Optional

from fastapi import Depends, FastAPI, Header, HTTPException, Query
from pydantic import BaseModel
from sqlalchemy import text

from credia.reminders.scheduler import Scheduler
from credia.reminders.store import ContactStore

logger = logging.getLogger(__name__)
PURGE_EVERY = timedelta(days=1)


class HealthOut(BaseModel):
    status: str
    last_run_at: Optional[datetime]
    last_run_errors: List[str]


class DecisionOut(BaseModel):
    id: int
    decided_at: datetime
    day: date
    customer_id: int
    loan_id: int
    reminder_id: str
    kind: str
    step: str
    outcome: str
    reason: Optional[str]
    channel: Optional[str]
    conversation_id: Optional[str]
    rule: Optional[str]
    detail: Optional[str]


class SchedulerLoop:
    """Runs ``scheduler.run()`` every ``interval`` seconds in a thread, and purges the audit once a day."""

    def __init__(self, scheduler: Scheduler, interval: float, retention_days: int) -> None:
        self.scheduler = scheduler
        self.interval = interval
        self.retention = timedelta(days=retention_days)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="reminders", daemon=True)
        self.last_run_at: Optional[datetime] = None
        self.last_errors: List[str] = []
        self.purged_at: Optional[datetime] = None

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                report = self.scheduler.run(stopping=self.stopping)
                self.last_run_at, self.last_errors = report.at, report.errors
                for decision in report.decisions:
                    logger.info("reminder %s (customer %s): %s %s", decision.contact.reminder_id,
                                decision.contact.customer_id, decision.outcome, decision.reason or "")
                for error in report.errors:
                    logger.warning("reminders: %s", error)
                self._purge(report.at)
            except Exception:  # a bad pass must not stop the reminders for good
                logger.exception("reminder pass failed; trying again at the next one")
            self.stopping.wait(self.interval)

    def _purge(self, at: datetime) -> None:
        if self.purged_at is not None and at - self.purged_at < PURGE_EVERY:
            return
        removed = self.scheduler.store.purge(at - self.retention)
        self.purged_at = at
        if removed:
            logger.info("purged %s audit decisions older than %s days", removed, self.retention.days)


def create_app(store: ContactStore, token: str, loop: Optional[SchedulerLoop] = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if loop is not None:
            loop.start()
        try:
            yield
        finally:
            if loop is not None:
                loop.stop()
            store.close()

    app = FastAPI(
        title="Credia payment reminders",
        version="1.0.0",
        docs_url=None,
        redoc_url=None,
        description="Health of the reminder scheduler and the audit of its decisions (Bearer token).",
        lifespan=lifespan,
    )

    def authorised(authorization: Optional[str] = Header(None)) -> None:
        if not token:
            raise HTTPException(status_code=503, detail="REMINDERS_API_TOKEN is not set: the audit API is off")
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not given or not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(status_code=401, detail="missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    @app.get("/health", response_model=HealthOut, summary="The scheduler and its database")
    def health() -> HealthOut:
        try:
            with store.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as exc:  # any driver error means "not healthy"
            logger.warning("health check failed: %s", exc)
            raise HTTPException(status_code=503, detail="database unavailable") from None
        return HealthOut(
            status="ok",
            last_run_at=loop.last_run_at if loop else None,
            last_run_errors=loop.last_errors if loop else [],
        )

    @app.get(
        "/audit",
        response_model=List[DecisionOut],
        dependencies=[Depends(authorised)],
        summary="Decisions about reminders, oldest first, by customer and/or the customer's local day",
    )
    def audit(
        customer_id: Optional[int] = Query(None, ge=1),
        day: Optional[date] = None,
        limit: int = Query(500, ge=1, le=5000),
        offset: int = Query(0, ge=0),
    ) -> List[Dict[str, Any]]:
        return store.decisions(customer_id, day, limit, offset)

    return app
