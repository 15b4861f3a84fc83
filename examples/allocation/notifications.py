"""The default mail sender: it writes each mail to the log until an SMTP sender is configured."""

from __future__ import annotations

import logging

logger = logging.getLogger("examples.allocation.mail")


def log_mail(*, to: str, subject: str, body: str) -> None:
    logger.info("mail to %s: %s\n%s", to, subject, body)
