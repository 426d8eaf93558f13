"""Logging set-up. Tokens must never reach a log line, so a filter masks them."""

from __future__ import annotations

import logging
import re

from flask import Flask

# token=..., "token": "...", Bearer ..., our API token prefix, and signed links' paths
# (/l/open/<token>: a crash on such a page logs its path).
_SECRET_PATTERNS = [
    re.compile(r"(token=)[^&\s\"']+", re.IGNORECASE),
    re.compile(r"(/l/(?:open|confirm)/)[^\s/?\"']+"),
    re.compile(r"(\"token\"\s*:\s*\")[^\"]+", re.IGNORECASE),
    re.compile(r"(Bearer\s+)\S+", re.IGNORECASE),
    re.compile(r"()sbk_[A-Za-z0-9_\-]+"),
]


def redact(text: str) -> str:
    """Replace anything that looks like a token with '***'."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1***", text)
    return text


class RedactTokens(logging.Filter):
    """Mask tokens in every record before a handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def init_app(app: Flask) -> None:
    """Set the level of the app's loggers and install the redacting filter."""
    if not logging.getLogger().handlers:  # under gunicorn: app logs go to stderr too
        logging.basicConfig(
            format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"
        )
    logging.getLogger("webapp").setLevel(app.config["LOG_LEVEL"])
    root = logging.getLogger()
    if not any(isinstance(f, RedactTokens) for f in root.filters):
        for handler in root.handlers or [logging.lastResort]:
            if handler and not any(isinstance(f, RedactTokens) for f in handler.filters):
                handler.addFilter(RedactTokens())
