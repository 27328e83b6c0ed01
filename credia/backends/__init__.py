"""Async HTTP clients for the lender's systems (core banking, payments), used by the action server."""

from credia.backends.http import BackendError, BackendRejected, BackendUnavailable, NotFound

__all__ = ["BackendError", "BackendRejected", "BackendUnavailable", "NotFound"]
