"""A second, private Kafka broker (same jars as the local stack, other ports, its own data) for tests that
stop and restart Kafka without disturbing the shared one.

With `advertise_proxied=PORT` it has a second client listener, PROXIED, on a port of its own
(`proxied_listener`) that advertises 127.0.0.1:PORT instead: put a TCP proxy (toxiproxy) on PORT forwarding to
`proxied_listener`, and clients bootstrapping at `proxied_bootstrap` go through the proxy for every connection
(the metadata they get back names PORT), while `bootstrap` stays direct.

With `sasl=True` it is secured as the local stack's broker is (deploy/local/kafka.sh): the standard authorizer with
nothing allowed that no ACL allows, and a SASL_PLAINTEXT listener with SCRAM-SHA-512 at `sasl_bootstrap` (the proxied
listener too, if any); `bootstrap` stays open for the tests' own tools, its anonymous principal a super user."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from tests.integration.processes import free_port, terminate

ROOT = Path(__file__).resolve().parents[2]
LIBS = ROOT / ".local" / "kafka" / "libs"


class PrivateKafka:
    def __init__(
        self,
        home: Path,
        port: int | None = None,
        heap: str = "512m",
        *,
        advertise_proxied: int | None = None,
        data: Path | None = None,
        sasl: bool = False,
    ) -> None:
        self.home = home
        self.heap = heap
        self.port = port or free_port(consecutive=3)  # the broker's, its controller's and its SASL listener's
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.sasl = sasl
        self.sasl_bootstrap = f"127.0.0.1:{self.port + 2}"
        self.advertise_proxied = advertise_proxied
        self.proxied_listener: int | None = None  # where the proxy forwards to
        while advertise_proxied and self.proxied_listener in (None, self.port, self.port + 1, advertise_proxied):
            self.proxied_listener = free_port()
        self.proxied_bootstrap = f"127.0.0.1:{advertise_proxied}" if advertise_proxied else None
        self.data = data or home / "data"  # log.dirs (and the metadata log)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = home / "kafka.log"
        self.config = home / "server.properties"
        self.log4j = home / "log4j2.xml"

    def _configure(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(parents=True, exist_ok=True)
        controller = self.port + 1
        listeners = [f"PLAINTEXT://127.0.0.1:{self.port}", f"CONTROLLER://127.0.0.1:{controller}"]
        advertised = [f"PLAINTEXT://127.0.0.1:{self.port}"]
        protocols = ["CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT"]
        security: list[str] = []
        if self.sasl:
            listeners.append(f"SASL_PLAINTEXT://{self.sasl_bootstrap}")
            advertised.append(f"SASL_PLAINTEXT://{self.sasl_bootstrap}")
            protocols.append("SASL_PLAINTEXT:SASL_PLAINTEXT")
            security = [
                "sasl.enabled.mechanisms=SCRAM-SHA-512",
                "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                "listener.name.proxied.scram-sha-512.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                "allow.everyone.if.no.acl.found=false",
                "super.users=User:ANONYMOUS",
            ]
        if self.advertise_proxied:
            listeners.append(f"PROXIED://127.0.0.1:{self.proxied_listener}")
            advertised.append(f"PROXIED://127.0.0.1:{self.advertise_proxied}")
            protocols.append("PROXIED:SASL_PLAINTEXT" if self.sasl else "PROXIED:PLAINTEXT")
        self.config.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{controller}",
                    f"listeners={','.join(listeners)}",
                    f"advertised.listeners={','.join(advertised)}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"listener.security.protocol.map={','.join(protocols)}",
                    f"log.dirs={self.data}",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=3",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=false",
                    *security,
                ]
            )
            + "\n"
        )
        self.log4j.write_text(
            '<Configuration status="WARN"><Appenders><Console name="out" target="SYSTEM_OUT">'
            '<PatternLayout pattern="[%d] %p %m (%c)%n"/></Console></Appenders>'
            '<Loggers><Root level="INFO"><AppenderRef ref="out"/></Root></Loggers></Configuration>\n'
        )
        if not (self.data / "meta.properties").exists():
            cluster = subprocess.run(
                ["java", "-cp", f"{LIBS}/*", "kafka.tools.StorageTool", "random-uuid"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()[-1]
            subprocess.run(
                [
                    "java",
                    "-cp",
                    f"{LIBS}/*",
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    cluster,
                    "-c",
                    str(self.config),
                ],
                check=True,
                capture_output=True,
            )

    def start(self, timeout: float = 60.0) -> float:
        """Starts the broker and returns how long it took to be ready."""
        self._configure()
        began = time.monotonic()
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    "java",
                    f"-Xmx{self.heap}",
                    f"-Dlog4j2.configurationFile={self.log4j}",
                    "-cp",
                    f"{LIBS}/*",
                    "kafka.Kafka",
                    str(self.config),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        while time.monotonic() - began < timeout:
            with self.log.open("rb") as f:
                f.seek(offset)
                if b"Kafka Server started" in f.read():
                    return time.monotonic() - began
            if self.proc.poll() is not None:
                raise RuntimeError(f"private Kafka exited; see {self.log}")
            time.sleep(0.2)
        raise TimeoutError(f"private Kafka did not start; see {self.log}")

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None
