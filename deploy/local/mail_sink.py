"""The local stack's SMTP server (aiosmtpd, a real one): keeps every message it accepts as one RFC 5322 file,
`<dir>/<time>-<message id>.eml`, which any mail reader opens (CONTRACT.md: 127.0.0.1:1025, .local/mail/).

For tests it can be told to refuse: a file `<dir>/mode.json` read at each message, e.g.
    {"defer": ["a@example.org"], "reject": ["b@example.org"], "defer_all": false}
answers 451 (try again later) to the `defer` addresses (or to everyone with defer_all) and 550 (no such
mailbox) to the `reject` ones. Usage: mail_sink.py [--host 127.0.0.1] [--port 1025] [--dir .local/mail]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import time
from email import message_from_bytes
from email.policy import default
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

_UNSAFE = re.compile(r"[^A-Za-z0-9._@-]+")


class Sink:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def _mode(self) -> dict[str, Any]:
        try:
            mode = json.loads((self.folder / "mode.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return mode if isinstance(mode, dict) else {}

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        mode = self._mode()
        if address in mode.get("reject", []):
            return "550 5.1.1 No such mailbox"
        if mode.get("defer_all") or address in mode.get("defer", []):
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data: bytes = envelope.original_content or envelope.content
        message_id = message_from_bytes(data, policy=default).get("Message-ID", "")
        name = _UNSAFE.sub("_", message_id.strip("<>"))[:120] or "no-id"
        path = self.folder / f"{time.time_ns()}-{name}.eml"
        partial = path.with_suffix(".part")  # written whole, then renamed: a reader never sees half a message
        partial.write_bytes(data)
        partial.rename(path)
        return "250 Message accepted for delivery"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--dir", type=Path, default=Path(".local/mail"))
    args = parser.parse_args()
    controller = Controller(Sink(args.dir), hostname=args.host, port=args.port, decode_data=False)
    controller.start()
    print(f"SMTP server on {args.host}:{args.port}, keeping messages in {args.dir}", flush=True)

    async def wait() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()

    try:
        asyncio.run(wait())
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
