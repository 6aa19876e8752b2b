"""Customers' contact details never reach the logs: intake's own lines name ids and counts
only, and the libraries that print whole messages or database commands at DEBUG (the Kafka
client prints each record it sends; PyMongo each command with its documents) are held at INFO
even when the service runs at DEBUG; and a database error is told by its codes and ids,
never its text (PyMongo's `BulkWriteError` prints every failing document)."""

from __future__ import annotations

import logging

from services.common.errors import redact_driver_errors

PAYLOAD_LOGGERS = ("aiokafka", "pymongo.command")


def keep_payloads_out_of_logs() -> None:
    redact_driver_errors()  # a bulk write's error text holds the documents it failed on
    for name in PAYLOAD_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.INFO or logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
