"""Customers' contact details never reach the logs: intake's own lines name ids and counts
only, and the libraries that print whole messages or database commands at DEBUG (the Kafka
client prints each record it sends; PyMongo each command with its documents) are held at INFO
even when the service runs at DEBUG."""

from __future__ import annotations

import logging

PAYLOAD_LOGGERS = ("aiokafka", "pymongo.command")


def keep_payloads_out_of_logs() -> None:
    for name in PAYLOAD_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.INFO or logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
