"""Readable validation errors: each names the field and the problem."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from pydantic import ValidationError
from pymongo.errors import BulkWriteError, ConnectionFailure, OperationFailure, PyMongoError


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """The errors of a validation as `{"field": "data.total.amount", "problem": "..."}`."""
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = [str(part) for part in err["loc"]]
        # A tagged union puts the tag first (e.g. "order.delivered"); the field path follows.
        if loc and "." in loc[0] and len(loc) > 1:
            loc = loc[1:]
        out.append({"field": ".".join(loc) or "(message)", "problem": err["msg"]})
    return out


def describe(exc: ValidationError) -> str:
    """One line naming every bad field and why."""
    return "; ".join(f"{e['field']}: {e['problem']}" for e in field_errors(exc))


class TransientError(Exception):
    """Raised by a handler for a condition that passes by itself (contention on a shared
    record): its batch is redelivered after a pause, and nothing is dead-lettered for it."""


# --- database errors in logs and dead letters --------------------------------------------

_CODE_NAMES = {11000: "duplicate key"}


def _ids(values: Iterable[Any]) -> str:
    shown = [str(v)[:64] for v in list(values)[:_SHOWN_IDS]]
    return ", ".join(shown) if shown else "-"


_SHOWN_IDS = 10


def chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, what caused it (`__cause__`, `__context__`) and what an exception group holds,
    each once."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        error = todo.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        yield error
        if isinstance(error, BaseExceptionGroup):
            todo.extend(error.exceptions)
        todo.extend(e for e in (error.__cause__, error.__context__) if e is not None)


def driver_error(exc: BaseException) -> PyMongoError | None:
    """The database driver's error in `exc`'s chain, if any."""
    return next((e for e in chain(exc) if isinstance(e, PyMongoError)), None)


def describe_error(exc: BaseException) -> str:
    """`Type: message`, except for the database driver's errors, whose text carries the
    documents that failed (a bulk write's `op`, a write's `keyValue`): of those only the
    codes and the ids are told."""
    if isinstance(exc, BulkWriteError):
        errors = exc.details.get("writeErrors", []) if exc.details else []
        codes = sorted({int(e.get("code", 0)) for e in errors})
        ids = [e["op"].get("_id") for e in errors if isinstance(e.get("op"), dict)]
        named = ", ".join(f"{c} ({_CODE_NAMES[c]})" if c in _CODE_NAMES else str(c)
                          for c in codes)
        concern = len(exc.details.get("writeConcernErrors", []) if exc.details else [])
        return (f"BulkWriteError: {len(errors)} write errors, codes [{named}], ids "
                f"[{_ids(ids)}]" + (f", {concern} write concern errors" if concern else ""))
    if isinstance(exc, OperationFailure):
        key = (exc.details or {}).get("keyValue") or {}
        ids = [v for k, v in key.items() if k == "_id"] if isinstance(key, dict) else []
        return f"{type(exc).__name__}: code {exc.code}" + (f", ids [{_ids(ids)}]" if ids else "")
    if isinstance(exc, PyMongoError):
        # Connection and selection errors name servers, not documents.
        return f"{type(exc).__name__}: {str(exc)[:500]}"
    return f"{type(exc).__name__}: {exc}"


def _redacting(factory: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        info = record.exc_info
        if info and info[1] is not None:
            driver = driver_error(info[1])
            if driver is not None and not isinstance(driver, ConnectionFailure):
                # The traceback would end in the driver's text: the description replaces it.
                record.exc_info = None
                record.exc_text = None
                safe = describe_error(driver).replace("%", "%%")
                record.msg = f"{record.msg} [{safe}]"
        return record

    make.redacts_driver_errors = True  # type: ignore[attr-defined]
    return make


def redact_driver_errors() -> None:
    """Every log record of this process that carries a database driver error (whose text
    holds documents) carries its codes and ids instead of its traceback."""
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "redacts_driver_errors", False):
        logging.setLogRecordFactory(_redacting(factory))
