"""How every Kafka client of ours connects and authenticates: one description (`KafkaConnection`, read from the
KAFKA_* settings) turned into the options of each client library we use: aiokafka (consumers, the admin client),
librdkafka (the outbox relay's producer, the ACL tool) and FastStream (the services' brokers).

    KAFKA_BOOTSTRAP_SERVERS   host:port,...
    KAFKA_SECURITY_PROTOCOL   PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    KAFKA_SASL_MECHANISM      SCRAM-SHA-512 (default) | SCRAM-SHA-256 | PLAIN
    KAFKA_SASL_USERNAME       the principal, e.g. service-routing
    KAFKA_SASL_PASSWORD
    KAFKA_SSL_CAFILE          PEM bundle of the brokers' CAs (default: the system's)
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

_SASL = {"SCRAM-SHA-512": SASLScram512, "SCRAM-SHA-256": SASLScram256, "PLAIN": SASLPlaintext}


@dataclass(frozen=True)
class KafkaConnection:
    bootstrap_servers: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, bootstrap: str | None = None) -> KafkaConnection:
        """From the KAFKA_* variables alone (tools that read no settings file): the local stack's open listener
        unless they say otherwise."""
        env = os.environ if environ is None else environ
        return cls(
            bootstrap_servers=bootstrap or env.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            security_protocol=env.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
            sasl_mechanism=env.get("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            sasl_username=env.get("KAFKA_SASL_USERNAME") or None,
            sasl_password=env.get("KAFKA_SASL_PASSWORD") or None,
            ssl_cafile=env.get("KAFKA_SSL_CAFILE") or None,
        )

    def as_principal(self, username: str, password: str, *, bootstrap: str | None = None) -> KafkaConnection:
        """The same brokers (over SASL, TLS kept if used), as another principal."""
        tls = self.security_protocol in ("SSL", "SASL_SSL")
        return KafkaConnection(
            bootstrap_servers=bootstrap or self.bootstrap_servers,
            security_protocol="SASL_SSL" if tls else "SASL_PLAINTEXT",
            sasl_mechanism=self.sasl_mechanism,
            sasl_username=username,
            sasl_password=password,
            ssl_cafile=self.ssl_cafile,
        )

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def _ssl_context(self) -> ssl.SSLContext | None:
        return ssl.create_default_context(cafile=self.ssl_cafile) if self.uses_tls else None

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaConsumer, AIOKafkaProducer and AIOKafkaAdminClient."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.uses_tls:
            options["ssl_context"] = self._ssl_context()
        if self.uses_sasl:
            options |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password,
            }
        return options

    def librdkafka(self) -> dict[str, Any]:
        """Configuration entries for a confluent-kafka (librdkafka) client."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol.lower(),
        }
        if self.uses_tls and self.ssl_cafile:
            conf["ssl.ca.location"] = self.ssl_cafile
        if self.uses_sasl:
            conf |= {
                "sasl.mechanisms": self.sasl_mechanism,
                "sasl.username": self.sasl_username,
                "sasl.password": self.sasl_password,
            }
        return conf

    def faststream(self) -> BaseSecurity | None:
        """FastStream's `security=` for a KafkaBroker (None: PLAINTEXT)."""
        if self.uses_sasl:
            assert self.sasl_username is not None and self.sasl_password is not None
            kind = _SASL[self.sasl_mechanism]
            return kind(self.sasl_username, self.sasl_password, ssl_context=self._ssl_context(), use_ssl=self.uses_tls)
        if self.uses_tls:
            return BaseSecurity(ssl_context=self._ssl_context(), use_ssl=True)
        return None
