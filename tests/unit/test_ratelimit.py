"""Rate limits per client address (xinfang_shared.ratelimit): token buckets on a fake clock, the bound on
memory, who the client is behind proxies, and the FastAPI dependency (429, Retry-After, the cost of a miss)."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from hypothesis import given, settings
from hypothesis import strategies as st

from xinfang_shared.ratelimit import RATE_LIMITED, ClientAddresses, RateLimit, TokenBuckets, rate_limit_now


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _buckets(clock: Clock, *, rate_per_s: float = 1.0, burst: float = 3, max_clients: int = 100) -> TokenBuckets:
    return TokenBuckets(rate_per_s=rate_per_s, burst=burst, max_clients=max_clients, clock=clock)


# --- the bucket ---------------------------------------------------------------------------------------


def test_a_full_bucket_admits_a_burst_then_refuses_saying_how_long_to_wait() -> None:
    clock = Clock()
    buckets = _buckets(clock, rate_per_s=0.5, burst=3)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(2.0)  # one token at 0.5 a second
    clock.advance(1.5)
    assert buckets.take("a") == pytest.approx(0.5)
    clock.advance(0.5)
    assert buckets.take("a") == 0.0
    assert buckets.take("a") == pytest.approx(2.0)


def test_a_refused_request_takes_nothing() -> None:
    clock = Clock()
    buckets = _buckets(clock, rate_per_s=1, burst=1)
    assert buckets.take("a") == 0.0
    for _ in range(50):
        assert buckets.take("a") > 0
    clock.advance(1)
    assert buckets.take("a") == 0.0


def test_refill_stops_at_the_burst() -> None:
    clock = Clock()
    buckets = _buckets(clock, rate_per_s=1, burst=3)
    buckets.take("a")
    clock.advance(3600)
    assert [buckets.take("a") == 0.0 for _ in range(4)] == [True, True, True, False]


def test_each_key_has_its_own_bucket() -> None:
    clock = Clock()
    buckets = _buckets(clock, burst=2)
    assert [buckets.take("a") for _ in range(2)] == [0.0, 0.0]
    assert buckets.take("a") > 0
    assert buckets.take("b") == 0.0


def test_a_charge_puts_the_bucket_in_debt_which_refill_repays_first() -> None:
    clock = Clock()
    buckets = _buckets(clock, rate_per_s=1, burst=3)
    buckets.take("a")
    buckets.charge("a", 6)  # 3 - 1 - 6 = -4
    assert buckets.take("a") == pytest.approx(5.0)
    clock.advance(4.9)
    assert buckets.take("a") > 0
    clock.advance(0.1)
    assert buckets.take("a") == 0.0


def test_a_clock_going_back_adds_no_tokens() -> None:
    clock = Clock()
    buckets = _buckets(clock, rate_per_s=1, burst=1)
    buckets.take("a")
    clock.advance(-10)
    assert buckets.take("a") > 0
    clock.advance(10.5)
    assert buckets.take("a") > 0  # half a token since the last request's time
    clock.advance(0.5)
    assert buckets.take("a") == 0.0


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    gaps=st.lists(st.floats(min_value=0, max_value=3, allow_nan=False), min_size=1, max_size=200),
    rate=st.floats(min_value=0.1, max_value=10),
    burst=st.integers(min_value=1, max_value=10),
)
def test_never_more_than_the_burst_plus_the_refill_are_admitted(gaps: list[float], rate: float, burst: int) -> None:
    clock = Clock()
    buckets = _buckets(clock, rate_per_s=rate, burst=burst)
    start, admitted = clock.now, 0
    for gap in gaps:
        clock.advance(gap)
        if buckets.take("a") == 0.0:
            admitted += 1
        assert admitted <= burst + (clock.now - start) * rate + 1e-6


def test_parameters_are_checked() -> None:
    for bad in (
        {"rate_per_s": 0, "burst": 1},
        {"rate_per_s": 1, "burst": 0},
        {"rate_per_s": 1, "burst": 1, "max_clients": 0},
    ):
        with pytest.raises(ValueError):
            TokenBuckets(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RateLimit(rate_per_s=1, burst=1, miss_cost=0.5)


# --- bounded memory -----------------------------------------------------------------------------------


def test_at_most_max_clients_are_kept_the_least_recently_used_evicted() -> None:
    clock = Clock()
    buckets = _buckets(clock, rate_per_s=0.001, burst=5, max_clients=3)
    for key in ("a", "b", "c"):
        buckets.take(key)
    buckets.take("a")  # a is now the most recently used; b the least
    buckets.take("d")
    assert len(buckets) == 3
    assert "b" not in buckets
    assert {"a", "c", "d"} == {k for k in "abcd" if k in buckets}
    for i in range(1000):
        buckets.take(f"k{i}")
        assert len(buckets) <= 3


def test_buckets_that_refilled_completely_are_dropped_as_requests_pass() -> None:
    clock = Clock()
    buckets = _buckets(clock, rate_per_s=1, burst=2, max_clients=1000)
    for i in range(10):
        buckets.take(f"idle{i}")
    assert len(buckets) == 10
    clock.advance(0.5)
    buckets.take("busy")
    assert len(buckets) == 11, "not refilled yet: kept"
    clock.advance(1)  # every idle bucket is full again
    for _ in range(5):
        buckets.take("busy")
    assert len(buckets) == 1
    assert "busy" in buckets


# --- who the client is --------------------------------------------------------------------------------


def test_the_peer_is_the_client_and_forwarded_for_is_ignored_unless_the_peer_is_trusted() -> None:
    clients = ClientAddresses(["10.0.0.0/8"])
    assert clients.key("203.0.113.5") == "203.0.113.5"
    assert clients.key("203.0.113.5", ["198.51.100.7"]) == "203.0.113.5"
    assert ClientAddresses().key("10.1.2.3", ["198.51.100.7"]) == "10.1.2.3"


def test_behind_trusted_proxies_the_client_is_the_right_most_untrusted_forwarded_address() -> None:
    clients = ClientAddresses(["10.0.0.0/8", "192.0.2.1"])
    # What the client wrote (1.2.3.4) is left of what the proxies saw: it is not believed.
    assert clients.key("10.0.0.2", ["1.2.3.4, 198.51.100.7"]) == "198.51.100.7"
    assert clients.key("10.0.0.2", ["1.2.3.4, 198.51.100.7, 192.0.2.1, 10.9.9.9"]) == "198.51.100.7"
    assert clients.key("192.0.2.1", ["1.2.3.4", "198.51.100.7, 10.0.0.3"]) == "198.51.100.7"  # several headers
    assert clients.key("10.0.0.2", []) == "10.0.0.2"  # no header: the proxy itself
    assert clients.key("10.0.0.2", ["10.0.0.7, 10.0.0.3"]) == "10.0.0.7"  # all trusted: the left-most
    assert clients.key("10.0.0.2", ["198.51.100.7:5555"]) == "198.51.100.7"
    assert clients.key("10.0.0.2", ["[2001:db8::7]:443"]) == "2001:db8::/64"


def test_an_unreadable_forwarded_address_counts_as_the_trusted_hop_that_passed_it() -> None:
    clients = ClientAddresses(["10.0.0.0/8"])
    assert clients.key("10.0.0.2", ["198.51.100.7, garbage"]) == "10.0.0.2"
    assert clients.key("10.0.0.2", ["198.51.100.7, nonsense, 10.0.0.5"]) == "10.0.0.5"


def test_ipv6_clients_are_counted_per_64_and_mapped_ipv4_as_ipv4() -> None:
    clients = ClientAddresses()
    assert clients.key("2001:db8:1:2::1") == clients.key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert clients.key("2001:db8:1:3::1") != clients.key("2001:db8:1:2::1")
    assert ClientAddresses(ipv6_prefix=128).key("2001:db8::1") == "2001:db8::1/128"
    assert clients.key("::ffff:203.0.113.5") == "203.0.113.5"
    assert ClientAddresses(["2001:db8::/32"]).key("2001:db8::1", ["203.0.113.9"]) == "203.0.113.9"


def test_peers_that_are_not_addresses_are_one_client_each() -> None:
    clients = ClientAddresses(["10.0.0.0/8"])
    assert clients.key("testclient", ["198.51.100.7"]) == "testclient"
    assert clients.key(None) == "unknown"


# --- the FastAPI dependency ---------------------------------------------------------------------------


def _app(limit: RateLimit) -> FastAPI:
    app = FastAPI()

    @app.get("/things/{name}", dependencies=[limit.depends], responses={**RATE_LIMITED})
    async def thing(name: str) -> dict[str, str]:
        if name == "missing":
            raise HTTPException(404, "no such thing")
        if name == "conflict":
            raise HTTPException(409, "conflict")
        return {"name": name}

    @app.get("/free")
    async def free() -> dict[str, str]:
        return {}

    return app


def _client(app: FastAPI, host: str, port: int = 1234) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(host, port)), base_url="http://test")


async def test_429_with_retry_after_in_whole_seconds_and_a_detail_saying_when() -> None:
    clock = Clock()
    app = _app(RateLimit(rate_per_s=0.4, burst=2, clock=clock))
    async with _client(app, "203.0.113.5") as a, _client(app, "198.51.100.7") as b:
        assert [(await a.get("/things/x")).status_code for _ in range(2)] == [200, 200]
        refused = await a.get("/things/x")
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "3"  # 2.5 s, rounded up
        assert refused.json() == {"detail": "too many requests from this address; try again in 3 seconds"}
        assert (await b.get("/things/x")).status_code == 200, "another address is served"
        assert (await a.get("/free")).status_code == 200, "routes without the dependency are not limited"
        clock.advance(2.5)
        assert (await a.get("/things/x")).status_code == 200
        assert (await a.get("/things/x")).status_code == 429


async def test_a_miss_costs_miss_cost_tokens_a_hit_or_other_error_one() -> None:
    clock = Clock()
    app = _app(RateLimit(rate_per_s=1, burst=10, miss_cost=4, clock=clock))
    async with _client(app, "203.0.113.5") as a, _client(app, "203.0.113.6") as b:
        assert [(await a.get("/things/missing")).status_code for _ in range(3)] == [404, 404, 404]  # 12 tokens
        refused = await a.get("/things/x")
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "3"  # 10 - 12 = -2: three seconds to hold one token
        statuses = [(await b.get(f"/things/{n}")).status_code for n in ["x", "conflict"] * 5]
        assert statuses == [200, 409] * 5, "ten tokens, ten requests that were not misses"
        assert (await b.get("/things/x")).status_code == 429


async def test_time_can_be_overridden_in_an_app_one_did_not_build() -> None:
    app = _app(RateLimit(rate_per_s=1, burst=1))
    clock = Clock()
    app.dependency_overrides[rate_limit_now] = clock
    async with _client(app, "203.0.113.5") as a:
        assert (await a.get("/things/x")).status_code == 200
        assert (await a.get("/things/x")).status_code == 429
        clock.advance(1)
        assert (await a.get("/things/x")).status_code == 200


async def test_forwarded_for_is_read_only_from_trusted_proxies() -> None:
    app = _app(RateLimit(rate_per_s=1, burst=1, trusted_proxies=["10.0.0.2"], clock=Clock()))
    async with _client(app, "10.0.0.2") as proxy, _client(app, "203.0.113.5") as direct:
        for client in ("198.51.100.1", "198.51.100.2", "198.51.100.3"):
            assert (await proxy.get("/things/x", headers={"X-Forwarded-For": client})).status_code == 200
        assert (await proxy.get("/things/x", headers={"X-Forwarded-For": "198.51.100.1"})).status_code == 429
        # An untrusted peer writing a fresh X-Forwarded-For each time gets no fresh bucket.
        assert (await direct.get("/things/x", headers={"X-Forwarded-For": "192.0.2.1"})).status_code == 200
        assert (await direct.get("/things/x", headers={"X-Forwarded-For": "192.0.2.2"})).status_code == 429


def test_openapi_documents_429_with_retry_after() -> None:
    app = _app(RateLimit(rate_per_s=1, burst=1))
    documented = app.openapi()["paths"]["/things/{name}"]["get"]["responses"]["429"]
    assert "Retry-After" in documented["headers"]
    assert documented["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/TooManyRequests"}


def test_the_address_passed_on_is_the_clients_own_not_its_bucket() -> None:
    """What a proxy (the console) writes in X-Forwarded-For for the next hop: an address intake can read."""
    from starlette.requests import Request

    def request(peer: str, forwarded: str | None = None) -> Request:
        headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
        return Request({"type": "http", "client": (peer, 1234), "headers": headers})

    clients = ClientAddresses(["10.0.0.0/8"])
    assert clients.address_of(request("2001:db8:1:2::9")) == "2001:db8:1:2::9"
    assert clients.of(request("2001:db8:1:2::9")) == "2001:db8:1:2::/64"
    assert clients.address_of(request("10.0.0.2", "1.2.3.4, 198.51.100.7")) == "198.51.100.7"
    assert clients.address_of(request("203.0.113.5", "198.51.100.7")) == "203.0.113.5"
