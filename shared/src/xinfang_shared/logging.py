"""Structured logging that keeps personal data out.

Services log identifiers (matter_id, event_id, topic, offsets), never payloads. As a second line of
defence a filter masks anything shaped like a resident ID number, a phone number or an e-mail address,
in the message and in every `extra` field.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

_PII_PATTERNS = (
    # 18-character resident ID (17 digits + digit or X), not part of a longer number or a UUID run.
    re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])"),
    # mainland mobile (1[3-9]x, 11 digits), optionally with +86
    re.compile(r"(?<!\d)(?:\+?86[- ]?)?1[3-9]\d{9}(?!\d)"),
    # landline: area code 0xx(x) then 7-8 digits
    re.compile(r"(?<!\d)0\d{2,3}-?\d{7,8}(?!\d)"),
    # either written in groups, as people and gateways write them (+86 138 1234 5678, (028) 8612-3456); apart
    # from letters, digits and hyphens, so that a UUID's all-digit groups are not taken for one
    re.compile(r"(?<![0-9A-Za-z-])(?:\+?86[- ]?)?1[3-9]\d[- ]\d{4}[- ]\d{4}(?![0-9A-Za-z-])"),
    re.compile(r"(?<![0-9A-Za-z-])(?:0\d{2,3}|\(0\d{2,3}\))[- ]?(?:\d{7,8}|\d{3,4}[- ]\d{4})(?![0-9A-Za-z-])"),
    # an e-mail address, tried only where a run of its characters begins (and taken whole): tried at every
    # position, a long run of letters without an @ costs the square of its length
    re.compile(r"(?<![\w.+-])[\w.+-]++@[\w-]+\.[\w.-]+"),
)
MASK = "[redacted]"

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def redact(text: str) -> str:
    for pattern in _PII_PATTERNS:
        text = pattern.sub(MASK, text)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry |= {k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")}
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(_redact_value(entry), ensure_ascii=False, default=str))


class ConsoleFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        extras = {k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")}
        line = super().format(record)
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        return redact(line)


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else ConsoleFormatter())
    handler.set_name("xinfang")
    root = logging.getLogger()
    # Replace only our own handler: others (a test runner's capture) stay.
    root.handlers[:] = [h for h in root.handlers if h.get_name() != "xinfang"] + [handler]
    root.setLevel(level.upper())
    # aiokafka is chatty at INFO about every rebalance; keep its warnings.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
