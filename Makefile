# The two commands a new machine needs: `make up` (run the system) and `make test` (pass the tests).
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV := UV_PYTHON_DOWNLOADS=never uv run --frozen

.PHONY: help up down logs status infra test lint typecheck unit contract integration bench chaos asyncapi contract-snapshot

help:
	@echo "make up      install what is missing, start Kafka, PostgreSQL and the five services"
	@echo "             make up ROUTING=3 NOTIFY=2: that many instances (INTAKE ROUTING SUPERVISION NOTIFY STATS, default 1)"
	@echo "make status  Kafka, PostgreSQL and every service instance with its port"
	@echo "make down    stop everything make up started"
	@echo "make logs    follow the services' logs"
	@echo "make test    ruff, mypy, unit + contract + integration tests (starts Kafka and PostgreSQL)"
	@echo "make bench   benchmarks (numbers and ratios against a baseline measured in the same run)"
	@echo "make chaos   faults injected into the whole cluster under load, then every effect checked (CHAOS_ARGS=...)"

# Scale-out: `make up ROUTING=3 NOTIFY=2` runs that many instances (default 1; ports and names: deploy/local/lib.sh).
SCALE_VARS := INTAKE ROUTING SUPERVISION NOTIFY STATS

up:
	@$(foreach v,$(SCALE_VARS),$(v)='$($(v))') bash deploy/local/up.sh

down:
	@bash deploy/local/down.sh

logs:
	@shopt -s nullglob; tail -n 50 -F .local/log/{intake,routing,supervision,notify,stats}.log \
	  .local/log/{intake,routing,supervision,notify,stats}-[0-9]*.log

status:
	@bash deploy/local/kafka.sh status; bash deploy/local/postgres.sh status; bash deploy/local/services.sh status

infra:
	@bash deploy/local/infra.sh up

test: infra lint typecheck
	$(UV) pytest

lint:
	$(UV) ruff check .
	$(UV) ruff format --check .

typecheck:
	$(UV) mypy

unit:
	$(UV) pytest -m "not integration"

integration: infra
	$(UV) pytest -m integration

bench: infra
	$(UV) python -m tests.bench

chaos: infra
	$(UV) python -m tests.chaos $(CHAOS_ARGS)

asyncapi:
	$(UV) python -m xinfang_shared.contracts.asyncapi > docs/asyncapi.json

contract-snapshot:
	$(UV) python -m tests.contract.snapshot
