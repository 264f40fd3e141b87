"""The local broker's SCRAM users and ACLs: every principal of the topic registry (service-<service>,
unit-<unit>, channel-<channel>) with its password from .local/credentials.env (KAFKA_PASSWORD_<principal>, `-`
written `_`), and the ACLs generated from the registry (xinfang_shared.contracts.acls), applied over the open
listener (its anonymous principal is a super user) so that the SCRAM listener enforces them. Idempotent; an ACL
the registry no longer grants is removed. Usage: uv run python deploy/local/kafka_security.py [--prefix P]"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from xinfang_shared.contracts.acls import acls, principals
from xinfang_shared.kafka_admin import apply_security


def password_variable(principal: str) -> str:
    return "KAFKA_PASSWORD_" + principal.replace("-", "_")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--prefix", default=os.environ.get("TOPIC_PREFIX", ""), help="a namespace (TOPIC_PREFIX)")
    args = parser.parse_args()
    missing = [p for p in principals() if not os.environ.get(password_variable(p))]
    if missing:
        sys.exit(f"no password for {', '.join(missing)} in the environment: run deploy/local/credentials.sh")
    passwords = {p: os.environ[password_variable(p)] for p in principals()}
    bootstrap = os.environ.get("KAFKA_ADMIN_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    done = asyncio.run(apply_security(bootstrap, passwords, acls(args.prefix)))
    print(
        f"[xinfang] kafka: {done.users} principals, ACLs {done.added} added and {done.removed} removed",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
