"""The Kafka baseline of `make bench`: a process that does what a service's Kafka path does, minus the service.

`python -m tests.bench.kafka_baseline --bootstrap B --source IN --target OUT --group G [consumer options]`

It consumes IN the way intake consumes its channel topics (aiokafka in a consumer group, batches by
`getmany`, the same batch size and fetch settings, offsets committed after each batch, every value decoded
as JSON) and produces every record to OUT the way the outbox relay does (confluent-kafka / librdkafka with
the relay's settings: acks=all, idempotent, linger.ms 2, murmur2_random; a batch produced, then flushed off
the event loop), in a task of its own as the relay runs beside the consumer. No database, no validation: the
ratio of a service's figure to this one is what the service adds to the plumbing both need.

Runs until SIGTERM. The consumer options default to intake's (services/intake/src/xinfang_intake/app.py);
routing's bench passes routing's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

import orjson
from aiokafka import AIOKafkaConsumer
from confluent_kafka import Producer

# The outbox relay's producer (shared/src/xinfang_shared/outbox.py, OutboxRelay._new_producer).
RELAY_PRODUCER = {
    "acks": "all",
    "enable.idempotence": True,
    "linger.ms": 2,
    "message.timeout.ms": 10_000,
    "partitioner": "murmur2_random",
}
RELAY_BATCH = 1000  # outbox_batch_size (shared/src/xinfang_shared/settings.py)
# How intake consumes its channel topics (a FastStream batch subscriber: getmany every batch_timeout_ms).
INTAKE_CONSUMER = {
    "max_records": 1000,
    "fetch_min_bytes": 128 * 1024,
    "fetch_max_wait_ms": 200,
    "batch_timeout_ms": 200,
}
# How routing consumes matters.registered.v2 (max_records 500, aiokafka's fetch defaults).
ROUTING_CONSUMER = {"max_records": 500, "fetch_min_bytes": 1, "fetch_max_wait_ms": 500, "batch_timeout_ms": 200}


def consumer_args(options: dict[str, int]) -> list[str]:
    return [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]


async def forward(args: argparse.Namespace, stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(
        args.source,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_min_bytes=args.fetch_min_bytes,
        fetch_max_wait_ms=args.fetch_max_wait_ms,
    )
    producer = Producer({"bootstrap.servers": args.bootstrap, "client.id": "bench-kafka-baseline", **RELAY_PRODUCER})
    pending: asyncio.Queue[list[tuple[bytes | None, bytes]]] = asyncio.Queue()
    failed: list[str] = []

    def on_delivery(error: object, _: object) -> None:
        if error is not None:
            failed.append(str(error))

    async def relay() -> None:
        while True:
            batch = await pending.get()
            while not pending.empty() and len(batch) < RELAY_BATCH:
                batch += pending.get_nowait()
            for key, value in batch:
                producer.produce(args.target, value=value, key=key, on_delivery=on_delivery)
            unsent = await asyncio.to_thread(producer.flush, 60)
            if unsent or failed:
                raise RuntimeError(f"{unsent} unsent, failures: {failed[:3]}")

    await consumer.start()
    relaying = asyncio.create_task(relay())
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=args.batch_timeout_ms, max_records=args.max_records)
            records = [r for part in batches.values() for r in part]
            if not records:
                continue
            out = []
            for record in records:
                orjson.loads(record.value or b"{}")  # every consumer decodes what it takes
                out.append((record.key, record.value or b""))
            pending.put_nowait(out)
            await consumer.commit()
            if relaying.done():
                relaying.result()  # raises what stopped it
    finally:
        relaying.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relaying
        await consumer.stop()
        await asyncio.to_thread(producer.flush, 10)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.kafka_baseline")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--group", required=True)
    for option, default in INTAKE_CONSUMER.items():
        parser.add_argument(f"--{option.replace('_', '-')}", type=int, default=default)
    args = parser.parse_args()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await forward(args, stop)

    try:
        import uvloop  # the services' loop (uvicorn loop="uvloop")

        uvloop.run(run())
    except ImportError:
        asyncio.run(run())


if __name__ == "__main__":
    main()
