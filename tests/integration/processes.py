"""Services run as real processes, the way they are deployed (for kill -9 and for fuzzing over HTTP)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.integration.conftest import ROOT, eventually
from tests.integration.kafka_tools import start_group_at_end
from xinfang_shared.contracts.topics import BY_NAME
from xinfang_shared.db import migrate_dsn
from xinfang_shared.settings import LOCAL_DEV_SECRET


def free_port(consecutive: int = 1) -> int:
    """A port (the first of `consecutive` ones) free now, below the kernel's ephemeral range: a port from that
    range can be taken by any outgoing connection before the service binds it, or while a test has it stopped
    to restart it on the same port (the bind then fails, "Address already in use")."""
    low, _ = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    rng = random.Random()
    for _ in range(500):
        port = rng.randrange(max(1025, low - 12_000), low - consecutive)
        if all(_bindable(p) for p in range(port, port + consecutive)):
            return port
    raise RuntimeError("no free port below the ephemeral range")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


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
        # The transport key the tests seal registrations with (tests.factories.registration), unless one is given:
        # otherwise the service would read the local stack's own from .local/credentials.env.
        self.env = {"PERSONAL_DATA_TRANSPORT_KEY": LOCAL_DEV_SECRET} | env
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


# --- fuzzing a service over HTTP ---------------------------------------------------------------------------


@asynccontextmanager
async def private_database(admin_dsn: str) -> AsyncIterator[str]:
    """A database of its own for one fuzzed service (what fuzzing stores, e.g. a clock moved by years, stays
    out of the other tests' schemas); dropped afterwards. Yields its DSN."""
    name = f"xinfang_fuzz_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield admin_dsn.rsplit("/", 1)[0] + "/" + name
    finally:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def start_fuzzed(
    service: str, *, database: str, bootstrap: str, migrations: Path, log: Path, env: dict[str, str] | None = None
) -> ServiceProcess:
    """`xinfang-<service> serve` as deployed: its schema migrated in `database`, its own consumer group started
    at the end of the topics it consumes (the shared topics hold other runs' messages)."""
    await migrate_dsn(database, service, migrations)
    group = f"test-fuzz-{service}-{uuid.uuid4().hex[:8]}"
    await start_group_at_end(bootstrap, group, [t.name for t in BY_NAME.values() if service in t.consumers])
    process = ServiceProcess(
        os.environ
        | {
            "DATABASE_URL": database,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_GROUP_ID": group,
            "HTTP_PORT": str(free_port()),
            "LOG_LEVEL": "WARNING",
            "OUTBOX_POLL_INTERVAL_S": "0.2",
        }
        | (env or {}),
        log,
        service=service,
    )
    await process.start()
    await group_settled(bootstrap, group)
    return process


async def group_settled(bootstrap: str, group: str, *, quiet_s: float = 5.0, timeout_s: float = 90.0) -> None:
    """Until the service's consumers have all joined their group: it is Stable with the same members for
    `quiet_s` (they join one after another; a commit during a rebalance is logged as an error by aiokafka)."""
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        last: tuple[str, int] | None = None
        since = loop.time()
        while loop.time() < deadline:
            described = (await admin.describe_consumer_groups([group]))[0].to_object()["groups"][0]
            now = (described["state"], len(described["members"]))
            if now != last:
                last, since = now, loop.time()
            elif now[0] == "Stable" and now[1] > 0 and loop.time() - since >= quiet_s:
                return
            await asyncio.sleep(0.25)
        raise AssertionError(f"consumer group {group} did not settle: {last}")
    finally:
        await admin.close()


def log_errors(log: Path, start: int = 0) -> list[str]:
    """The error-level lines (JSON `level` error or critical, or anything not JSON that looks like a
    traceback) the service wrote from byte `start` of its log on."""
    found = []
    with log.open("rb") as f:
        f.seek(start)
        text = f.read().decode("utf-8", "replace")
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            if "Traceback" in line or "ERROR" in line:
                found.append(line)
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "critical"):
            found.append(line)
    return found


def log_size(log: Path) -> int:
    return log.stat().st_size if log.exists() else 0


def names_fields(response: Any) -> bool:
    """A 422 names what is wrong field by field (the shared `{detail, errors: [{field, message}]}`)."""
    try:
        body = response.json()
    except ValueError:
        return False
    errors = body.get("errors") if isinstance(body, dict) else None
    return (
        isinstance(errors, list)
        and bool(errors)
        and all(isinstance(e, dict) and isinstance(e.get("field"), str) and e["field"] for e in errors)
    )


Tweak = Callable[[Any, Any], None]


def fuzz_openapi(
    url: str,
    *,
    headers: Callable[[Any], dict[str, str]],
    fixed: Callable[[Any], list[dict[str, Any]]] | None = None,
    tweak: Tweak | None = None,
    max_examples: int = 60,
    expect_paths: set[str] | frozenset[str] = frozenset(),
) -> Counter[tuple[str, int]]:
    """Schemathesis against the service's own OpenAPI document at `url`: every operation with positive and
    negative generation (and, per operation, cases with `fixed` path parameters, e.g. ids of rows that exist),
    `tweak(case, data)` then edits a case before it is sent with `headers(case)`. Checks: never a server
    error, and every 422 names its fields. Returns the answers by (operation, status)."""
    import schemathesis
    from schemathesis.core.result import Err

    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        assert not isinstance(result, Err), f"an operation schemathesis cannot read: {result.err()}"
        operations.append(result.ok())
    assert {op.path for op in operations} >= expect_paths, sorted(op.path for op in operations)
    statuses: Counter[tuple[str, int]] = Counter()
    for operation in operations:
        _fuzz_operation(operation, statuses, headers, fixed(operation) if fixed else [], tweak, max_examples)
    return statuses


def _fuzz_operation(
    operation: Any,
    statuses: Counter[tuple[str, int]],
    headers: Callable[[Any], dict[str, str]],
    fixed: list[dict[str, Any]],
    tweak: Tweak | None,
    max_examples: int,
) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error

    label = f"{operation.method.upper()} {operation.path}"
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    strategies = [operation.as_strategy(mode) for mode in modes]
    strategies += [operation.as_strategy(mode, path_parameters=p) for p in fixed for mode in modes]

    @given(case=st.one_of(strategies), data=st.data())
    @settings(max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def no_server_error(case: Any, data: Any) -> None:
        if tweak is not None:
            tweak(case, data)
        response = case.call(headers=headers(case), timeout=60)
        statuses[(label, response.status_code)] += 1
        case.validate_response(response, checks=[not_a_server_error])
        if response.status_code == 422:
            assert names_fields(response), f"{label}: a 422 that names no field: {response.text[:500]}"

    no_server_error()


def by_operation(statuses: Counter[tuple[str, int]]) -> dict[str, dict[int, int]]:
    """{operation: {status: count}}, for printing."""
    table: dict[str, dict[int, int]] = {}
    for (label, code), count in sorted(statuses.items()):
        table.setdefault(label, {})[code] = count
    return table


# --- mutating valid bodies ---------------------------------------------------------------------------------

NASTY_STRINGS = (
    "",
    " ",
    "\u0000",
    "a\u0000b",
    "\x01\x02\x1b[31m",
    "\x7f",
    "\ud800",  # a lone surrogate: sent as the JSON escape "\ud800"
    "x\udfffy",
    "\ufeff\u202e\u2028",
    "🙂" * 3,
    "x" * 70_000,
    "汉" * 25_000,
    "' OR 1=1; --",
    "%s%n%x",
    "9" * 400,
)
NASTY_DATETIMES = (
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00-14:00",
    "9999-12-31T23:59:59-14:00",
    "9999-12-31T23:59:59.999999+00:00",
    "9999-12-31T23:59:59+14:00",
    "2026-02-30T10:00:00+08:00",
    "2026-01-01T10:00:00",
    "2026-01-01T10:00:00+24:00",
    "1969-12-31T23:59:59Z",
    "2200-01-01T00:00:00Z",
)
NASTY_NUMBERS = (0, -1, 1, 2**31, 2**31 - 1, 2**63 - 1, 2**63, -(2**63) - 1, 10**30, 1.5, 1e308, -0.0)


def nasty_values() -> Any:
    """A hypothesis strategy of values that break naive handling: control characters, NUL, lone surrogates,
    very long strings, huge integers, extreme datetimes, wrong types."""
    from hypothesis import strategies as st

    scalars = st.one_of(
        st.sampled_from(NASTY_STRINGS),
        st.sampled_from(NASTY_DATETIMES),
        st.sampled_from(NASTY_NUMBERS),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.sampled_from([None, True, False, [], {}, [None], {"": None}]),
        st.text(st.characters(categories=("Cc", "Cs", "Co", "Cn", "Zl", "Zp", "So")), max_size=20),
        st.text(max_size=30),
    )
    return st.one_of(scalars, st.lists(scalars, max_size=3))


def _paths(value: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    found: list[tuple[str | int, ...]] = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def mutate(data: Any, valid: dict[str, Any], *, most_valid: float = 0.3) -> tuple[dict[str, Any], list[str]]:
    """With hypothesis' `data`: `valid` (a deep copy) as it is, or with one to three of its fields replaced by
    a nasty value, removed, or an unknown field added. Returns the body and what was changed."""
    import copy

    from hypothesis import strategies as st

    body = copy.deepcopy(valid)
    if data.draw(st.integers(0, 99), label="untouched?") < most_valid * 100:
        return body, []
    changes = []
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        paths = _paths(body)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths), label="field")
        parent: Any = body
        for part in path[:-1]:
            parent = parent[part]
        how = data.draw(st.sampled_from(["replace", "replace", "replace", "remove", "add"]), label="how")
        name = ".".join(str(p) for p in path)
        if how == "remove" and isinstance(parent, dict):
            parent.pop(path[-1], None)
            changes.append(f"-{name}")
        elif how == "add" and isinstance(parent, dict):
            parent[data.draw(st.sampled_from(["zzz", "\u0000", "__proto__", "x" * 300]))] = "extra"
            changes.append(f"+{name}")
        else:
            parent[path[-1]] = data.draw(nasty_values(), label=name)
            changes.append(f"~{name}")
    return body, changes


def json_bytes(value: Any) -> bytes:
    """JSON as a client may send it: lone surrogates as \\uXXXX escapes (ensure_ascii), NaN/huge floats kept."""
    return json.dumps(value, ensure_ascii=True).encode()


async def start_standin(
    script: str, port: int, folder: Path, log: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """One of the local stack's stand-ins (deploy/local/mail_sink.py, sms_gateway.py) as a process of its own,
    on `port`, keeping what it receives in `folder`; returns once it listens."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                str(ROOT / ".venv/bin/python"),
                str(ROOT / "deploy/local" / script),
                *("--port", str(port), "--dir", str(folder)),
                *args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=os.environ | (env or {}),
        )

    async def listening() -> bool:
        assert proc.poll() is None, f"{script} exited; see {log}"
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        writer.close()
        return True

    await eventually(listening, timeout=30)
    return proc
