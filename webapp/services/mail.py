"""E-mail for those no tab or device reached: composing, sending over SMTP, the job."""

from __future__ import annotations


def configured(config) -> bool:
    """Whether e-mail can be sent: an SMTP server is set."""
    return bool(config.get("SMTP_URL"))
