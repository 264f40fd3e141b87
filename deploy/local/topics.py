"""Creates every topic in the registry (and its .dlq) with its partitions and settings; sets the settings of those
that exist; never gives a keyed topic more partitions (its keys would lose their order: reported instead).
Idempotent. Usage: uv run python deploy/local/topics.py [--prefix P] [--delete] [--replication-factor N]

With a prefix (or TOPIC_PREFIX), the topics of that namespace (`P` + each name), as the services name them when
run with the same TOPIC_PREFIX; `--delete` removes a namespace's topics again (a benchmark's or a chaos run's,
say; refused without a prefix: the contract's topics are never deleted from here).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from xinfang_shared.contracts.topics import topics_to_create
from xinfang_shared.kafka_admin import delete_topics, ensure_topics
from xinfang_shared.kafka_auth import KafkaConnection


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--prefix", default=os.environ.get("TOPIC_PREFIX", ""), help="a namespace (TOPIC_PREFIX)")
    parser.add_argument("--delete", action="store_true", help="delete the namespace's topics")
    parser.add_argument(
        "--replication-factor",
        type=int,
        default=int(os.environ.get("TOPIC_REPLICATION_FACTOR", "1")),
        help="replicas of each topic created (TOPIC_REPLICATION_FACTOR; 1 on a one-broker stack)",
    )
    args = parser.parse_args()
    kafka = KafkaConnection.from_env()
    wanted = {args.prefix + name: spec for name, spec in topics_to_create().items()}
    if args.delete:
        if not args.prefix:
            parser.error("--delete needs a --prefix: the contract's own topics are never deleted from here")
        deleted = asyncio.run(delete_topics(kafka, list(wanted)))
        print(f"[xinfang] topics: {len(deleted)} of namespace {args.prefix!r} deleted", file=sys.stderr)
        return
    done = asyncio.run(ensure_topics(kafka, wanted, replication_factor=args.replication_factor))
    namespace = f" (namespace {args.prefix!r})" if args.prefix else ""
    print(
        f"[xinfang] topics{namespace}: {len(wanted)} in the registry, {len(done.created)} created,"
        f" {len(done.grown)} dead-letter topics given more partitions",
        file=sys.stderr,
    )
    for name, have, asked in done.short:
        print(
            f"[xinfang] warning: {name} has {have} partitions, the registry asks {asked}; a keyed topic is never"
            " given more (its keys would move and lose their order): plan a new topic to scale further",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
