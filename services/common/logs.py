"""Log privacy: what the libraries a service uses would log of a message's or a document's
body, kept out even when a service runs at DEBUG.

- PyMongo's command log (`pymongo.command`, DEBUG) quotes each command and reply: the
  inserted documents and what a query returned, names, e-mails and phones included. Its
  lines keep what they say about the command (name, database, duration, request id) and
  lose the documents.
- The Kafka client's producer (DEBUG) prints the value of each record it sends: the line
  keeps the key (a customer id) and the topic, and says only how long the value was.
- uvicorn's access log is off (`runtime.server_config`), but a handler added to its logger
  later (a logging config, a log shipper) turns it on again: its lines lose the query, where
  the customer's page takes its link's token.

Installed once per process by every service's runtime: filters on the loggers that write
those lines, so they hold whatever level the loggers are given later.
"""

from __future__ import annotations

import json
import logging

COMMAND_LOGGER = "pymongo.command"
PRODUCER_LOGGER = "aiokafka.producer.producer"
ACCESS_LOGGER = "uvicorn.access"
# The fields of a command log line that quote documents.
DOCUMENT_FIELDS = ("command", "reply", "failure")
OMITTED = "<omitted>"


class CommandsWithoutDocuments(logging.Filter):
    """Rewrites a PyMongo command log record without its documents; drops a record whose
    shape it does not know rather than let a body through."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            fields = json.loads(record.getMessage())  # PyMongo renders its lines as JSON
        except ValueError:
            return False
        if not isinstance(fields, dict):
            return False
        for name in DOCUMENT_FIELDS:
            if name in fields:
                fields[name] = OMITTED
        record.msg, record.args = json.dumps(fields), ()
        return True


class RecordsWithoutValues(logging.Filter):
    """The producer's "Sending (key=… value=…) to …" without the value."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not isinstance(record.msg, str) or "value=" not in record.msg:
            return True
        if isinstance(args, tuple) and len(args) == 3:
            value = args[1]
            size = len(value) if isinstance(value, bytes | str) else 0
            record.args = (args[0], f"<{size} bytes>", args[2])
            return True
        return False  # a shape we do not know, with a value in it: dropped


class RequestsWithoutQueries(logging.Filter):
    """An access line (client, method, path with query, version, status) without the
    query."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not (isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str)):
            return False  # a shape we do not know, perhaps with a query in it: dropped
        path, query, _ = args[2].partition("?")
        record.args = (args[0], args[1], path + ("?<omitted>" if query else ""), *args[3:])
        return True


def install_log_privacy() -> None:
    for name, kind in ((COMMAND_LOGGER, CommandsWithoutDocuments),
                       (PRODUCER_LOGGER, RecordsWithoutValues),
                       (ACCESS_LOGGER, RequestsWithoutQueries)):
        logger = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in logger.filters):
            logger.addFilter(kind())
