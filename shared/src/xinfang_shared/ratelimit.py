"""Rate limits per client address for public HTTP endpoints: a token bucket per address, kept in memory.

`RateLimit(...).depends` is a FastAPI dependency for the routes it guards (put `RATE_LIMITED` in their OpenAPI
`responses`): a request takes one token from its address's bucket, or is answered 429 with `Retry-After`
(whole seconds, rounded up) and `{"detail": "... try again in N seconds"}`; a request the route answers with
a "miss" status (404 by default: a guessed key) costs `miss_cost` tokens in all. Buckets refill at `rate_per_s`
up to `burst`. Every operation is O(1) in the number of addresses; there is no background task: memory is
bounded by `max_clients` (least recently used addresses are evicted first) and buckets that have refilled
completely are dropped as requests pass (a new bucket starts full, so nothing is lost).

The client address is the ASGI peer, unless that peer is one of `trusted_proxies`: then it is the right-most
address of `X-Forwarded-For` that is not a trusted proxy (the left part of that header is whatever the client
wrote). IPv6 clients are counted per /64 (`ipv6_prefix`), the block one host or household routinely holds.

The limit is per service instance: each replica counts on its own, so N replicas admit N times the rate. A
cluster-wide limit belongs to the ingress (or API gateway) in production; this one protects each instance
and stays correct behind any ingress.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from typing import Any

from fastapi import Depends, HTTPException, Request, status
from pydantic import BaseModel

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Room to spare above one request for float rounding, so a computed wait is never a hair short.
_EPSILON = 1e-9


class TooManyRequests(BaseModel):
    detail: str


RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {
        "model": TooManyRequests,
        "description": "Too many requests from this client address; try again after Retry-After seconds",
        "headers": {
            "Retry-After": {
                "description": "Seconds to wait before the next request is served (whole, rounded up)",
                "schema": {"type": "integer", "minimum": 1},
            }
        },
    }
}


class _Bucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


class TokenBuckets:
    """One token bucket per key, at most `max_clients` of them (least recently used evicted first; about 230
    bytes each, so the default 100 000 is some 23 MB). Evicting a drained bucket forgives that key, so the cap
    should exceed the addresses active within a refill (burst / rate seconds).

    Tokens may go below zero through `charge` (a cost known only after the request was served): that debt
    is repaid by refill before the key is admitted again, so every token charged is paid for."""

    def __init__(
        self,
        *,
        rate_per_s: float,
        burst: float,
        max_clients: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s <= 0 or burst < 1 or max_clients < 1:
            raise ValueError("rate_per_s must be > 0, burst >= 1 and max_clients >= 1")
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, key: object) -> bool:
        return key in self._buckets

    def take(self, key: str, cost: float = 1.0, *, now: float | None = None) -> float:
        """Takes `cost` tokens from `key`'s bucket if it holds that many and returns 0.0; otherwise takes
        nothing and returns the seconds until it will hold them."""
        now = self.clock() if now is None else now
        bucket = self._refilled(key, now)
        if bucket.tokens + _EPSILON >= cost:
            bucket.tokens -= cost
            return 0.0
        return (cost - bucket.tokens) / self.rate_per_s

    def charge(self, key: str, cost: float, *, now: float | None = None) -> None:
        """Takes `cost` more tokens from `key`'s bucket whatever it holds (it may go below zero)."""
        now = self.clock() if now is None else now
        self._refilled(key, now).tokens -= cost

    def _refilled(self, key: str, now: float) -> _Bucket:
        self._drop_idle(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_clients:
                self._buckets.popitem(last=False)
            bucket = self._buckets[key] = _Bucket(self.burst, now)
            return bucket
        self._buckets.move_to_end(key)
        if now > bucket.stamp:  # a clock that went back (or a stale `now`) adds nothing
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate_per_s)
            bucket.stamp = now
        return bucket

    def _drop_idle(self, now: float) -> None:
        """Drops the least recently used buckets if they have refilled completely: up to two per call, more than
        the one a call can add, so idle addresses do not pile up until eviction."""
        for _ in range(2):
            oldest = next(iter(self._buckets.values()), None)
            if oldest is None or oldest.tokens + (now - oldest.stamp) * self.rate_per_s < self.burst:
                return
            self._buckets.popitem(last=False)


class ClientAddresses:
    """Who a request comes from, as a bucket key: the peer, or (behind trusted proxies) X-Forwarded-For."""

    def __init__(self, trusted_proxies: Iterable[str | Network] = (), *, ipv6_prefix: int = 64) -> None:
        self.trusted = tuple(
            p if isinstance(p, ipaddress.IPv4Network | ipaddress.IPv6Network) else ipaddress.ip_network(p, strict=False)
            for p in trusted_proxies
        )
        if not 0 < ipv6_prefix <= 128:
            raise ValueError("ipv6_prefix must be in 1..128")
        self.ipv6_prefix = ipv6_prefix

    def key(self, peer: str | None, forwarded_for: Sequence[str] = ()) -> str:
        """The key of a request from `peer` carrying these X-Forwarded-For header values (in order)."""
        address = self._client(peer, forwarded_for)
        if address is None:
            # Not an IP (a unix socket, a test client's name): the peer as it is, all such peers one client.
            return peer or "unknown"
        return self._key(address)

    def address_of(self, request: Request) -> str:
        """The client's own address (an IPv6 one whole, not its /64 key): what a proxy passes on in
        X-Forwarded-For."""
        peer = request.client.host if request.client else None
        address = self._client(peer, request.headers.getlist("x-forwarded-for"))
        return str(address) if address is not None else (peer or "unknown")

    def _client(self, peer: str | None, forwarded_for: Sequence[str]) -> Address | None:
        address = _address(peer) if peer else None
        if address is None:
            return None
        if forwarded_for and self._is_trusted(address):
            hops = [h for value in forwarded_for for h in value.split(",")]
            for hop in reversed(hops):
                parsed = _address(hop)
                if parsed is None:
                    break  # unparseable: count by the trusted hop that passed it on, the last address known
                address = parsed
                if not self._is_trusted(address):
                    break
        return address

    def of(self, request: Request) -> str:
        return self.key(request.client.host if request.client else None, request.headers.getlist("x-forwarded-for"))

    def _is_trusted(self, address: Address) -> bool:
        return any(address in network for network in self.trusted if network.version == address.version)

    def _key(self, address: Address) -> str:
        if isinstance(address, ipaddress.IPv6Address):
            return str(ipaddress.IPv6Network((address, self.ipv6_prefix), strict=False))
        return str(address)


def _address(text: str) -> Address | None:
    """An address as peers and proxies write it: `192.0.2.1`, `2001:db8::1`, `192.0.2.1:443`, `[2001:db8::1]:443`;
    IPv4-mapped IPv6 as the IPv4 address."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else text
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


async def rate_limit_now() -> float | None:
    """The time rate limits are computed at; None: each limiter's own clock. A FastAPI dependency, so a test can
    stop time in an app it did not build: `app.dependency_overrides[rate_limit_now] = fake_clock`. (Async: FastAPI
    would run a plain function in its thread pool.)"""
    return None


class RateLimit:
    """A rate limit per client address for the routes that depend on `depends` (one budget across them all)."""

    def __init__(
        self,
        *,
        rate_per_s: float,
        burst: float,
        miss_cost: float = 1.0,
        miss_statuses: Collection[int] = (status.HTTP_404_NOT_FOUND,),
        trusted_proxies: Iterable[str | Network] = (),
        max_clients: int = 100_000,
        ipv6_prefix: int = 64,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # A miss (by default a 404: no such tracking code) costs `miss_cost` tokens in all, a hit one: the
        # petitioner who typed their code right is never held back by the price of guessing, a typo costs a
        # few tokens, and someone trying codes gets rate / miss_cost guesses, not rate. The route cannot know
        # in advance which it will be, so a request takes one token to be admitted and a miss is charged the
        # rest afterwards (the bucket may go into debt, repaid before the next request from that address).
        if miss_cost < 1:
            raise ValueError("miss_cost must be >= 1 (a miss costs at least what a hit does)")
        self.buckets = TokenBuckets(rate_per_s=rate_per_s, burst=burst, max_clients=max_clients, clock=clock)
        self.clients = ClientAddresses(trusted_proxies, ipv6_prefix=ipv6_prefix)
        self.miss_cost = miss_cost
        self.miss_statuses = frozenset(miss_statuses)

        async def limited(request: Request, now: float | None = Depends(rate_limit_now)) -> AsyncIterator[None]:
            key = self.clients.of(request)
            wait = self.buckets.take(key, now=now)
            if wait > 0:
                seconds = max(1, math.ceil(wait - _EPSILON))
                raise HTTPException(
                    status.HTTP_429_TOO_MANY_REQUESTS,
                    f"too many requests from this address; try again in {seconds} second{'s' if seconds > 1 else ''}",
                    headers={"Retry-After": str(seconds)},
                )
            try:
                yield
            except HTTPException as exc:
                if exc.status_code in self.miss_statuses and self.miss_cost > 1:
                    self.buckets.charge(key, self.miss_cost - 1, now=now)
                raise

        # scope="function": a miss is charged before its answer is sent, so the client's next request sees it.
        self.depends: Any = Depends(limited, scope="function")
