"""Personal data out of every log line of the assistant's processes.

``install()`` wraps the logging record factory, so each record made in the process (our modules, Rasa, rasa-sdk,
Sanic, uvicorn's access log) carries its message, arguments and traceback with the customer's data masked by
``credia.pii`` before any handler formats or ships it: a handler added later is covered too. Every entry point
calls it (core banking, payments, desk, reminders, the action server), and Rasa through the channel modules.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any, Callable

from credia.pii import mask_pii

_installed = False
# Loggers whose formatter reads the record's arguments.
KEEP_ARGUMENTS = frozenset({"uvicorn.access"})


def _masked(value: Any) -> Any:
    return mask_pii(value) if isinstance(value, str) else value


def mask_record(record: logging.LogRecord) -> logging.LogRecord:
    """Mask the message and the traceback; the arguments are merged into the message (a DNI may be a ``%d``).

    uvicorn's access log keeps its arguments (its formatter reads them), each string masked."""
    if record.name in KEEP_ARGUMENTS and isinstance(record.args, tuple):
        record.args = tuple(_masked(arg) for arg in record.args)
    else:
        try:
            record.msg, record.args = mask_pii(record.getMessage()), None
        except (TypeError, ValueError):  # a malformed call: logging reports it, with the data masked
            record.msg = _masked(record.msg)
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        record.exc_text = mask_pii("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
    return record


def install() -> None:
    """Mask every record made in this process from now on (idempotent)."""
    global _installed
    if _installed:
        return
    make_record: Callable[..., logging.LogRecord] = logging.getLogRecordFactory()

    def masked_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return mask_record(make_record(*args, **kwargs))

    logging.setLogRecordFactory(masked_record)
    _installed = True
