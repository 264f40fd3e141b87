"""Services run as real processes, the way they are deployed (for kill -9 and for fuzzing over HTTP)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import httpx

from tests.integration.conftest import ROOT, eventually


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def terminate(proc: subprocess.Popen[bytes] | None, grace_s: float = 30) -> None:
    """SIGTERM, then SIGKILL if it has not ended within `grace_s`."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class ServiceProcess:
    """The real `xinfang-<service> serve` process, as deployed."""

    def __init__(self, env: dict[str, str], log: Path, service: str = "intake") -> None:
        self.service = service
        self.env = env
        self.log = log
        self.port = int(env["HTTP_PORT"])
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(ROOT / f".venv/bin/xinfang-{self.service}"), "serve"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        async with httpx.AsyncClient() as client:

            async def healthy() -> bool:
                assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
                try:
                    return (await client.get(f"http://127.0.0.1:{self.port}/health")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(healthy, timeout=60)

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        terminate(self.proc)


IntakeProcess = ServiceProcess
