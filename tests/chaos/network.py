"""Faults of `make chaos` (merged into tests/chaos/__main__.py's ALL_FAULTS): the network between the services
and Kafka, and Kafka's disk.

- `net-slow`, `net-reset`: the services reach the private broker only through toxiproxy (deploy/local/toxiproxy.sh
  builds it into .local/bin). The broker has a second listener, PROXIED, whose advertised address is the proxy's
  (tests/integration/private_kafka.py), so every connection a service makes, after bootstrap too, goes through
  it; the load generator, the watch and the checks stay on the direct listener. `net-slow` adds a latency toxic
  (`--latency-ms` ± a third, on every chunk the broker sends) for `--stop-s`; `net-reset` resets every
  connection as soon as the broker answers on it (reset_peer: requests reach the broker, their answers never
  come back) for half of `--stop-s`, then disables the proxy (connections refused) for as long, then enables it.
- `disk-full`: the broker's log directory (its metadata log too) is on a tmpfs of the run's own
  (`--kafka-disk`, mounted before the broker starts, unmounted at the end). The fault fills it with a file until
  no byte is left, lets the load run for `--stop-s`, removes the file and, when the broker died of it (a log
  directory that fails is taken offline, and a broker with none left stops), starts it again on its data.

Each needs its part of the set-up (`Network.start`), made only when the run has one of those faults."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from tests.integration.private_kafka import PrivateKafka
from tests.integration.processes import free_port, terminate

if TYPE_CHECKING:
    from tests.chaos.__main__ import Chaos

ROOT = Path(__file__).resolve().parents[2]
TOXIPROXY = ROOT / ".local" / "bin" / "toxiproxy-server"
INSTALL = ROOT / "deploy" / "local" / "toxiproxy.sh"
PROXY = "kafka"  # the one proxy: services → the broker's PROXIED listener
PROXY_FAULTS = ("net-slow", "net-reset")
DISK_FAULTS = ("disk-full",)


class Toxiproxy:
    """toxiproxy-server as a process of the run, and the few calls of its HTTP API the faults use."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}"
        self.log = home / "toxiproxy.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        result = subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True, check=False)
        if result.returncode != 0 or not TOXIPROXY.exists():
            raise RuntimeError(f"toxiproxy could not be installed ({INSTALL}):\n{result.stdout}{result.stderr}")
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(TOXIPROXY), "-host", "127.0.0.1", "-port", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.api}/version", timeout=2).status_code == 200:
                    return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"toxiproxy-server did not start; see {self.log}")
            time.sleep(0.2)

    def stop(self) -> None:
        terminate(self.proc, grace_s=10)
        self.proc = None

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with httpx.AsyncClient(base_url=self.api, timeout=10) as client:
            response = await client.request(method, path, json=body)
        if response.status_code >= 300:
            raise RuntimeError(f"toxiproxy {method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else None

    async def create(self, name: str, listen: int, upstream: int) -> None:
        await self.call(
            "POST",
            "/proxies",
            {"name": name, "listen": f"127.0.0.1:{listen}", "upstream": f"127.0.0.1:{upstream}", "enabled": True},
        )

    async def add_toxic(self, proxy: str, name: str, kind: str, stream: str, **attributes: int) -> None:
        body = {"name": name, "type": kind, "stream": stream, "toxicity": 1.0, "attributes": attributes}
        await self.call("POST", f"/proxies/{proxy}/toxics", body)

    async def remove_toxic(self, proxy: str, name: str) -> None:
        await self.call("DELETE", f"/proxies/{proxy}/toxics/{name}")

    async def enable(self, proxy: str, enabled: bool) -> None:
        await self.call("POST", f"/proxies/{proxy}", {"enabled": enabled})

    def connections(self) -> int:
        """Client connections the proxy accepted so far (from its log)."""
        with contextlib.suppress(OSError):
            return self.log.read_bytes().count(b"Accepted client")
        return 0


class Tmpfs:
    """A tmpfs of `size` mounted at `where` (root only), with a file to fill it."""

    def __init__(self, where: Path, size: str) -> None:
        self.where, self.size = where, size
        self.filler = where / "filler"  # beside Kafka's log directory (where / "data"), not in it
        self.mounted = False

    def mount(self) -> None:
        self.where.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0755", "tmpfs", str(self.where)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"disk-full needs Kafka's log directory on a tmpfs of its own, and `mount -t tmpfs -o"
                f" size={self.size} tmpfs {self.where}` failed ({result.returncode}: {result.stderr.strip()}):"
                " run as root on a machine that allows mounts, or leave disk-full out (--faults)"
            )
        self.mounted = True

    def unmount(self) -> None:
        if not self.mounted:
            return
        with contextlib.suppress(OSError):
            self.filler.unlink(missing_ok=True)
            used, size = self.usage()
            print(
                f"[chaos] Kafka's data at the end: {used / 2**20:.0f} MB of its {size / 2**20:.0f} MB tmpfs",
                file=sys.stderr,
            )
        for command in (["umount", str(self.where)], ["umount", "--lazy", str(self.where)]):
            if subprocess.run(command, capture_output=True, check=False).returncode == 0:
                self.mounted = False
                return
        print(f"[chaos] could not unmount the tmpfs at {self.where}: umount it by hand", file=sys.stderr, flush=True)

    def usage(self) -> tuple[int, int]:
        """(bytes used, bytes in all)."""
        st = os.statvfs(self.where)
        return (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_blocks * st.f_frsize

    def fill(self) -> int:
        """Write the filler until the tmpfs has no byte left; answers how many bytes it took."""
        written = 0
        with self.filler.open("wb", buffering=0) as f:
            free = os.statvfs(self.where).f_bavail * os.statvfs(self.where).f_frsize
            with contextlib.suppress(OSError):
                os.posix_fallocate(f.fileno(), 0, free)
                written = free
            f.seek(written)
            for chunk in (1 << 20, 1 << 12, 1):
                block = b"\xff" * chunk
                while True:
                    try:
                        n = f.write(block)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
                    written += n or 0
                    if not n:
                        break
        return written

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


class Network:
    """What the run's network and disk faults need: made by `start` only for the faults it has."""

    def __init__(self, workdir: Path, opts: argparse.Namespace) -> None:
        self.proxy: Toxiproxy | None = Toxiproxy(workdir) if set(PROXY_FAULTS) & set(opts.faults) else None
        self.proxy_port: int | None = None  # toxiproxy listens there, the broker advertises it
        while self.proxy and self.proxy_port in (None, self.proxy.port):
            self.proxy_port = free_port()
        self.disk: Tmpfs | None = (
            Tmpfs(workdir / "kafka-disk", opts.kafka_disk) if set(DISK_FAULTS) & set(opts.faults) else None
        )

    @property
    def kafka_data(self) -> Path | None:
        """Where the broker's log directory goes (None: its default)."""
        return self.disk.where / "data" if self.disk else None

    async def start(self, kafka: PrivateKafka) -> list[str]:
        """Before the broker starts: the tmpfs, and toxiproxy with its proxy to the broker. Answers what it did."""
        done: list[str] = []
        if self.disk:
            await asyncio.to_thread(self.disk.mount)
            done.append(f"Kafka's log directory on a {self.disk.size} tmpfs at {self.disk.where}")
        if self.proxy:
            assert self.proxy_port is not None and kafka.proxied_listener is not None
            await asyncio.to_thread(self.proxy.start)
            await self.proxy.create(PROXY, self.proxy_port, kafka.proxied_listener)
            done.append(
                f"services on Kafka through toxiproxy ({kafka.proxied_bootstrap} → 127.0.0.1:{kafka.proxied_listener})"
            )
        return done

    def close(self) -> None:
        """After the broker stopped."""
        if self.proxy:
            self.proxy.stop()
        if self.disk:
            self.disk.unmount()

    def toxiproxy(self, fault: str) -> Toxiproxy:
        if self.proxy is None or self.proxy.proc is None:
            raise RuntimeError(f"{fault}: toxiproxy was not started for this run")
        return self.proxy


def _network(chaos: Chaos) -> Network:
    if chaos.network is None:
        raise RuntimeError("the chaos run has no network set-up (tests/chaos/network.Network)")
    return chaos.network


async def net_slow(chaos: Chaos, opts: argparse.Namespace) -> str:
    proxy = _network(chaos).toxiproxy("net-slow")
    latency, jitter = int(opts.latency_ms), int(opts.latency_ms) // 3
    await proxy.add_toxic(PROXY, "slow", "latency", "downstream", latency=latency, jitter=jitter)
    try:
        await asyncio.sleep(opts.stop_s)
    finally:
        await proxy.remove_toxic(PROXY, "slow")
    return f"toxiproxy: +{latency} ± {jitter} ms on all the broker sends the services, for {opts.stop_s:.0f} s"


async def net_reset(chaos: Chaos, opts: argparse.Namespace) -> str:
    proxy = _network(chaos).toxiproxy("net-reset")
    phase = max(3.0, opts.stop_s / 2)
    before = proxy.connections()
    await proxy.add_toxic(PROXY, "reset", "reset_peer", "downstream", timeout=0)
    try:
        await asyncio.sleep(phase)
    finally:
        await proxy.remove_toxic(PROXY, "reset")
    reset = proxy.connections() - before
    await proxy.enable(PROXY, False)
    try:
        await asyncio.sleep(phase)
    finally:
        await proxy.enable(PROXY, True)
    return (
        f"toxiproxy: {reset} connections reset at the broker's first answer (reset_peer) for {phase:.0f} s,"
        f" then refused (proxy disabled) for {phase:.0f} s"
    )


async def disk_full(chaos: Chaos, opts: argparse.Namespace) -> str:
    disk = _network(chaos).disk
    if disk is None or not disk.mounted:
        raise RuntimeError("disk-full: Kafka's log directory is not on a tmpfs of this run (see the set-up)")
    kafka = chaos.kafka
    assert kafka.proc is not None
    used, size = disk.usage()
    offset = kafka.log.stat().st_size
    filled = await asyncio.to_thread(disk.fill)
    left = size - disk.usage()[0]
    try:
        await asyncio.sleep(opts.stop_s)
    finally:
        disk.free()
    # A broker whose only log directory failed stops (or halts); give one that is on its way out the time to.
    if _log_dir_failed(kafka, offset):
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(kafka.proc.wait, 30)
    how = (
        f"its {size / 2**20:.0f} MB tmpfs ({used / 2**20:.0f} MB of data) filled (+{filled / 2**20:.0f} MB,"
        f" {left} bytes left) for {opts.stop_s:.0f} s, then freed"
    )
    if kafka.proc.poll() is None and _log_dir_failed(kafka, offset):
        # It failed its log directory but did not stop: restart it on its data like one that did.
        await asyncio.to_thread(kafka.stop)
        how += "; broker up with its log directory offline, stopped"
    if kafka.proc is None or kafka.proc.poll() is not None:
        code = kafka.proc.returncode if kafka.proc is not None else "stopped"
        kafka.proc = None
        # Unclean: it recovers every partition (612) first, which takes a minute or more on a busy machine.
        took = await asyncio.to_thread(kafka.start, 300.0)
        return f"{how}; broker exited ({code}), restarted on its data in {took:.1f} s"
    return f"{how}; the broker stayed up"


def _log_dir_failed(kafka: PrivateKafka, offset: int) -> bool:
    with kafka.log.open("rb") as f:
        f.seek(offset)
        text = f.read()
    # LogDirFailureChannel: "Error while appending records to ... in dir"; LogManager: "Shutdown broker because
    # all log dirs in ... have failed"; ReplicaManager: "Stopping serving replicas in dir".
    return any(m in text for m in (b"LogDirFailureChannel", b"have failed", b"Stopping serving"))


FAULTS: dict[str, Callable[[Chaos, argparse.Namespace], Awaitable[str]]] = {
    "net-slow": net_slow,
    "net-reset": net_reset,
    "disk-full": disk_full,
}
