"""Which real Kafka and PostgreSQL the integration tier runs on: containers (testcontainers) where a Docker engine
answers, the local scripts otherwise (these machines have no Docker). `TEST_INFRA=local` forces the scripts."""

from __future__ import annotations

import os


def docker_answers() -> bool:
    if os.environ.get("TEST_INFRA") == "local":
        return False
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


INFRA = "testcontainers" if docker_answers() else "local"


def describe() -> str:
    if INFRA == "testcontainers":
        return "infrastructure: testcontainers (a Docker engine answers): Kafka and PostgreSQL in containers"
    return "infrastructure: local scripts (no Docker engine): deploy/local PostgreSQL and a private Kafka broker"
