"""Creates every topic in the registry (and its .dlq) with its partitions; raises partition counts that are
lower than the registry's. Idempotent. Usage: uv run python deploy/local/topics.py [--prefix P] [--delete]

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


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--prefix", default=os.environ.get("TOPIC_PREFIX", ""), help="a namespace (TOPIC_PREFIX)")
    parser.add_argument("--delete", action="store_true", help="delete the namespace's topics")
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    wanted = {args.prefix + name: partitions for name, partitions in topics_to_create().items()}
    if args.delete:
        if not args.prefix:
            parser.error("--delete needs a --prefix: the contract's own topics are never deleted from here")
        deleted = asyncio.run(delete_topics(bootstrap, list(wanted)))
        print(f"[xinfang] topics: {len(deleted)} of namespace {args.prefix!r} deleted", file=sys.stderr)
        return
    created, grown = asyncio.run(ensure_topics(bootstrap, wanted))
    namespace = f" (namespace {args.prefix!r})" if args.prefix else ""
    print(
        f"[xinfang] topics{namespace}: {len(wanted)} in the registry, {len(created)} created,"
        f" {len(grown)} given more partitions",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
