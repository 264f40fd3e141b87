"""Who intake lets in, on a running service over the real database (and broker): a channel key revoked is
refused by every instance within the keys' refresh interval, and concurrent lookups share one reload; when the
queue of submissions waiting to be registered is full, a submission is answered 503 with Retry-After."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from tests import factories
from tests.integration.conftest import eventually
from tests.integration.kafka_tools import start_group_at_end
from tests.integration.test_intake import CONSUMED
from xinfang_intake import __main__ as cli
from xinfang_intake.app import MIGRATIONS, create_asgi
from xinfang_intake.channel_keys import UNKNOWN_KEY_RELOAD_S, ChannelKeys, ChannelSystem, add_key
from xinfang_intake.registration import Outcome, Prepared
from xinfang_intake.settings import IntakeSettings
from xinfang_intake.state import IntakeState
from xinfang_intake.submissions import FastPath
from xinfang_shared.batching import Coalescer
from xinfang_shared.contracts.reference import Channel
from xinfang_shared.db import migrate_dsn
from xinfang_shared.service import Service

KEY = "test-admission-key-" + uuid.uuid4().hex
REFRESH_S = 0.5  # the keys' refresh interval here (the default is 30 s)


@dataclass
class Running:
    service: Service
    app: FastPath  # what the server serves
    http: httpx.AsyncClient

    @property
    def state(self) -> IntakeState:
        return self.app.current()

    async def probe(self, key: str) -> httpx.Response:
        """A submission with `key` and a body that is not JSON: 401 when the key is refused, 422 when it is
        accepted (and nothing is registered)."""
        return await self.http.post("/v1/submissions", content=b"{not json", headers={"Authorization": f"Bearer {key}"})

    async def status_for(self, key: str) -> int:
        return (await self.probe(key)).status_code


@pytest.fixture(scope="module")
async def running(database: str, bootstrap: str) -> AsyncIterator[Running]:
    group = f"test-intake-admission-{uuid.uuid4().hex[:8]}"
    await start_group_at_end(bootstrap, group, CONSUMED)
    settings = IntakeSettings(
        database_url=database,
        kafka_bootstrap_servers=bootstrap,
        kafka_group_id=group,
        channel_api_key=SecretStr(KEY),
        channel_keys_refresh_s=REFRESH_S,
        _env_file=None,  # type: ignore[call-arg]
    )
    await migrate_dsn(database, settings.db_schema, MIGRATIONS)
    service, app = create_asgi(settings, fast_path=True)
    assert isinstance(app, FastPath)
    await service.start()
    state = app.current()
    # As app.py builds the keys once it passes the setting on (it builds them with the default, 30 s, today).
    state.keys = ChannelKeys(service.pool, refresh_s=settings.channel_keys_refresh_s)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake")
    try:
        yield Running(service, app, http)
    finally:
        await http.aclose()
        await service.stop()


class WatchedPool:
    """The service's pool, counting the queries ChannelKeys makes; while `away`, refusing them as a pool does
    when PostgreSQL is away."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.fetches = 0
        self.away = False

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        self.fetches += 1
        if self.away:
            raise ConnectionRefusedError("PostgreSQL is away")
        return await self.pool.fetch(query, *args)


async def _revoke_with_the_cli(database: str, system: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`xinfang-intake keys revoke --system <system>`, in a thread (it runs its own event loop)."""
    monkeypatch.setenv("DATABASE_URL", database)
    monkeypatch.setattr(sys, "argv", ["xinfang-intake", "keys", "revoke", "--system", system])
    await asyncio.to_thread(cli.main)


async def test_a_revoked_key_is_refused_by_every_instance_within_the_refresh_interval(
    running: Running, database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    system = "revoked-" + uuid.uuid4().hex[:8]
    key = "key-" + uuid.uuid4().hex
    async with running.service.pool.acquire() as conn:
        await add_key(conn, system=system, channels=[Channel.LETTER], key=key)
    await eventually(lambda: _accepted(running, key), timeout=30)  # a new key is seen within a second
    another_instance = ChannelKeys(running.service.pool, refresh_s=REFRESH_S)
    assert await another_instance.system_for(key) == ChannelSystem(system, frozenset({Channel.LETTER}))

    await _revoke_with_the_cli(database, system, monkeypatch)
    assert f"revoked the key of {system}" in capsys.readouterr().out
    revoked_at = await running.service.pool.fetchval("SELECT revoked_at FROM channel_keys WHERE system = $1", system)
    assert revoked_at is not None

    # Both copies were read before the revocation; any lookup later than the interval reads the table again.
    await asyncio.sleep(REFRESH_S)
    assert await running.status_for(key) == 401
    assert await another_instance.system_for(key) is None
    assert await running.status_for(KEY) == 422, "the other keys still work"

    with pytest.raises(SystemExit, match="has no key to revoke"):
        await _revoke_with_the_cli(database, system, monkeypatch)


async def _accepted(running: Running, key: str) -> bool:
    return await running.status_for(key) != 401


async def test_lookups_under_load_reload_the_keys_once(running: Running) -> None:
    pool = WatchedPool(running.service.pool)
    keys = ChannelKeys(pool, refresh_s=REFRESH_S)  # type: ignore[arg-type]
    many = 200

    # Never loaded (as good as stale): the lookups arriving together share one reload.
    assert all(await asyncio.gather(*(keys.system_for(KEY) for _ in range(many))))
    assert pool.fetches == 1
    # Older than the interval: one more, however many requests find it so.
    await asyncio.sleep(REFRESH_S)
    assert all(await asyncio.gather(*(keys.system_for(KEY) for _ in range(many))))
    assert pool.fetches == 2

    # Within the interval a known key costs no query, and keys nobody has reload the table once a second at most.
    slow_pool = WatchedPool(running.service.pool)
    slow = ChannelKeys(slow_pool, refresh_s=60)  # type: ignore[arg-type]
    await slow.reload()
    assert all(await asyncio.gather(*(slow.system_for(KEY) for _ in range(many))))
    assert slow_pool.fetches == 1
    await asyncio.sleep(UNKNOWN_KEY_RELOAD_S)
    assert not any(await asyncio.gather(*(slow.system_for(f"guess-{i}") for i in range(many))))
    assert slow_pool.fetches == 2


async def test_a_copy_due_for_a_reload_that_fails_lets_no_key_through(running: Running) -> None:
    pool = WatchedPool(running.service.pool)
    saved, running.state.keys = running.state.keys, ChannelKeys(pool, refresh_s=REFRESH_S)  # type: ignore[arg-type]
    try:
        assert await running.status_for(KEY) == 422
        pool.away = True
        await asyncio.sleep(REFRESH_S)
        refused = await running.probe(KEY)
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == "5"
        assert "not registered" in refused.json()["detail"]
        pool.away = False
        assert await running.status_for(KEY) == 422
    finally:
        running.state.keys = saved


async def test_a_full_queue_is_answered_503_with_retry_after_and_registers_nothing(running: Running) -> None:
    state = running.state
    flushing, release = asyncio.Event(), asyncio.Event()

    async def held(batch: Sequence[Prepared]) -> list[Outcome]:
        flushing.set()
        await release.wait()
        return await state.intake.register_http(batch)

    tiny: Coalescer[Prepared, Outcome] = Coalescer(held, max_batch=1, workers=1, max_queue=1)
    tiny.start()
    saved, state.coalescer = state.coalescer, tiny
    bodies = [factories.submission() for _ in range(3)]
    try:
        being_registered = asyncio.create_task(_submit(running, bodies[0]))
        await asyncio.wait_for(flushing.wait(), 30)
        waiting = asyncio.create_task(_submit(running, bodies[1]))
        await eventually(lambda: tiny.queued == 1, timeout=30)

        refused = await _submit(running, bodies[2])
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == "5"
        assert "overloaded" in refused.json()["detail"] and "not registered" in refused.json()["detail"]

        release.set()
        assert (await being_registered).status_code == 202
        assert (await waiting).status_code == 202
    finally:
        release.set()
        state.coalescer = saved
        await tiny.stop()
    assert [await _registered(running, b) for b in bodies] == [True, True, False]
    again = await _submit(running, bodies[2])
    assert again.status_code == 202, "sent again, it is registered"


async def _submit(running: Running, body: dict[str, Any]) -> httpx.Response:
    return await running.http.post("/v1/submissions", json=body, headers={"Authorization": f"Bearer {KEY}"})


async def _registered(running: Running, body: dict[str, Any]) -> bool:
    query = "SELECT count(*) FROM matters WHERE external_id = $1"
    return bool(await running.service.pool.fetchval(query, body["external_id"]))
