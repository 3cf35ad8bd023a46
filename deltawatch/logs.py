"""Structured logs: one JSON object per line (or readable console lines), on stderr.

Context such as ``instance-id`` or ``subscription`` is bound with :func:`structlog.contextvars`
or ``log.bind(...)`` so every line about one instance can be found with one query.
"""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(worker: str, level: str = "INFO", fmt: str = "json") -> None:
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(worker=worker)
    # Libraries that use stdlib logging (kubernetes, httpx, uvicorn) go to the same stream.
    logging.basicConfig(level=max(getattr(logging, level), logging.INFO), stream=sys.stderr)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
