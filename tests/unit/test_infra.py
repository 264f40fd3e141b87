"""The integration tier runs on containers only where a Docker engine answers (tests/infra.py)."""

from __future__ import annotations

import pytest

from tests import infra


def test_no_engine_at_the_docker_host_means_the_local_scripts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.delenv("TEST_INFRA", raising=False)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    assert infra.docker_answers() is False


def test_the_local_scripts_can_be_asked_for_whatever_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    import docker

    class Answers:
        def ping(self) -> bool:
            return True

        def close(self) -> None: ...

    monkeypatch.setattr(docker, "from_env", lambda **_: Answers())
    monkeypatch.delenv("TEST_INFRA", raising=False)
    assert infra.docker_answers() is True, "an engine that answers is used"
    monkeypatch.setenv("TEST_INFRA", "local")
    assert infra.docker_answers() is False
