"""SQLAlchemy engine and session set-up shared by the services (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Optional

from sqlalchemy import DateTime, Numeric, String, create_engine, event
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import QueuePool
from sqlalchemy.types import TypeDecorator, TypeEngine


def make_engine(url: str, future: bool = True) -> Engine:
    """Create an engine; for SQLite, create the file's folder, set the pragmas below on each connection, and
    keep connections in a pool (SQLAlchemy 1.4 opens a new one per session on a file, which with the pragmas
    cost Rasa a tenth of its time under load)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        in_memory = not path or path == ":memory:" or "///" not in url
        if not in_memory:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        pool = {} if in_memory else {"poolclass": QueuePool, "pool_size": 5, "max_overflow": 10}
        engine = create_engine(
            url, future=future, connect_args={"check_same_thread": False, "timeout": 30}, **pool
        )
        event.listen(engine, "connect", sqlite_pragmas)
        return engine
    return create_engine(url, future=future, pool_pre_ping=True)


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Foreign keys on; WAL so readers never block the writer; ``synchronous=NORMAL`` so a commit does not wait
    for the disk to flush (~20 ms each here): durable when a process crashes, only a power cut at that instant
    can lose the last commits. Production runs on PostgreSQL (the scaled-out profile)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(bind=engine, future=True, expire_on_commit=False)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Aware datetimes stored as naive UTC, because SQLite drops offsets and would hand back naive values."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: Optional[datetime], dialect: Dialect) -> Optional[datetime]:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use timezone-aware datetimes")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: Optional[datetime], dialect: Dialect) -> Optional[datetime]:
        return None if value is None else value.replace(tzinfo=timezone.utc)


class ExactDecimal(TypeDecorator):
    """Decimals with a fixed scale: NUMERIC where the database has it, text on SQLite (which would use floats)."""

    impl = Numeric
    cache_ok = True

    def __init__(self, scale: int) -> None:
        super().__init__(precision=18, scale=scale, asdecimal=True)
        self.scale = scale
        self.quantum = Decimal(1).scaleb(-scale)

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(32))
        return dialect.type_descriptor(Numeric(18, self.scale, asdecimal=True))

    def process_bind_param(self, value: Optional[Decimal], dialect: Dialect) -> Any:
        if value is None:
            return None
        exact = Decimal(value).quantize(self.quantum)
        return str(exact) if dialect.name == "sqlite" else exact

    def process_result_value(self, value: Any, dialect: Dialect) -> Optional[Decimal]:
        return None if value is None else Decimal(str(value)).quantize(self.quantum)
