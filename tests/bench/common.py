"""What every benchmark shares: credentials, payloads, CPU accounting of the processes involved, the table."""

from __future__ import annotations

import os
import random
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from tests import factories

ROOT = Path(__file__).resolve().parents[2]
CREDENTIALS = ROOT / ".local" / "credentials.env"
_TICKS = os.sysconf("SC_CLK_TCK")
# The bench's own namespace on the broker (the services' TOPIC_PREFIX): every topic it and the services under test
# use is `<namespace><contract name>`, created at the start and deleted at the end, so a `make up` stack never
# reads the bench's matters (and the bench never reads the stack's).
NAMESPACE = os.environ.get("BENCH_TOPIC_PREFIX") or f"bench-{secrets.token_hex(3)}."


def topic(name: str) -> str:
    """The bench's name of the contract topic `name`."""
    return NAMESPACE + name


def credentials() -> dict[str, str]:
    """The local stack's `.local/credentials.env` (KEY=value lines)."""
    values: dict[str, str] = {}
    for line in CREDENTIALS.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip("'\"")
    return values


# ---------------------------------------------------------------------------------------------- payloads


@dataclass(frozen=True)
class Payload:
    external_id: str
    body: bytes  # the submission, serialised once


def payloads(n: int, rng: random.Random, petitioners: set[str]) -> list[Payload]:
    """`n` valid submissions (channel letter), each with its own external_id and a petitioner (ID number)
    not in `petitioners` (which is updated): no repeats, no advisory-lock contention between them."""
    out: list[Payload] = []
    for _ in range(n):
        body = factories.submission(rng)
        while body["petitioner"]["id_number"] in petitioners:
            body["petitioner"]["id_number"] = factories.id_number(rng)
        petitioners.add(body["petitioner"]["id_number"])
        out.append(Payload(body["external_id"], orjson.dumps(body)))
    return out


# ------------------------------------------------------------------------------------------ CPU accounting


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (all cores) since boot."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(p) for p in parts[:8])
    return (user + nice + system + irq + softirq + steal) / _TICKS


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _all_pids() -> Iterable[int]:
    return (int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())


@dataclass
class CpuSnapshot:
    at: float
    machine: float
    pids: dict[int, tuple[str, float]] = field(default_factory=dict)  # pid → (group, CPU seconds so far)


class CpuMeter:
    """CPU seconds per group of processes over a phase, read from /proc (nothing is attached to them):
    this benchmark process, the services under test (`under_test`: pid → group name), PostgreSQL, Kafka, and
    other xinfang services, e.g. of a running `make up` stack (which also consume the shared topics and so
    take CPU from the benchmark)."""

    def __init__(self, under_test: Mapping[int, str] | None = None) -> None:
        self.under_test = dict(under_test or {})

    def _group(self, pid: int) -> str | None:
        if pid == os.getpid():
            return "bench client (this process)"
        if pid in self.under_test:
            return self.under_test[pid]
        cmd = _cmdline(pid)
        if cmd.startswith("postgres") or "/postgres " in cmd or "postgres:" in cmd:
            return "postgresql (all backends)"
        if "kafka.Kafka" in cmd:
            return "kafka broker"
        if "/xinfang-" in cmd:
            return "other xinfang-* processes (make up, tests)"
        return None

    def snapshot(self) -> CpuSnapshot:
        snap = CpuSnapshot(at=time.perf_counter(), machine=_machine_busy_s())
        for pid in _all_pids():
            group = self._group(pid)
            if group is not None:
                snap.pids[pid] = (group, _proc_cpu_s(pid))
        return snap


@dataclass(frozen=True)
class CpuUse:
    wall_s: float
    by_group: dict[str, float]  # CPU seconds
    machine_s: float


def cpu_between(before: CpuSnapshot, after: CpuSnapshot) -> CpuUse:
    """Per process alive at the end: its CPU since the start, or since it started (a process that exited in
    between, e.g. a PostgreSQL backend of a closed connection, is lost to its group and counts as "anything
    else" in the table; diffing group sums instead would subtract what it had spent before)."""
    groups: dict[str, float] = {}
    for pid, (group, cpu_s) in after.pids.items():
        earlier = before.pids.get(pid)
        spent = cpu_s - earlier[1] if earlier is not None and earlier[0] == group else cpu_s
        groups[group] = groups.get(group, 0.0) + max(0.0, spent)
    return CpuUse(wall_s=after.at - before.at, by_group=groups, machine_s=after.machine - before.machine)


def machine_idle_fraction(window_s: float = 0.5) -> float:
    """Fraction of all cores idle over the next `window_s` (blocking; call before a phase, not during)."""
    cores = os.cpu_count() or 1
    busy0, t0 = _machine_busy_s(), time.perf_counter()
    time.sleep(window_s)
    busy1, t1 = _machine_busy_s(), time.perf_counter()
    return max(0.0, 1.0 - (busy1 - busy0) / ((t1 - t0) * cores))


# ----------------------------------------------------------------------------------------------- output


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    ratio: float | None = None  # to the baseline of the same path, measured in the same run
    target: float | None = None  # a rate to reach (higher is better)
    note: str = ""


def ratio_text(ratio: float) -> str:
    """Three significant digits: 0.0034 and 0.0091 stay apart (two decimals would print both as 0.00)."""
    return f"{ratio:.3g}"


def _num(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def print_table(title: str, figures: list[Figure]) -> None:
    header = ("figure", "value", "unit", "ratio to baseline", "target", "met")
    rows = [
        (
            f.name,
            _num(f.value),
            f.unit,
            ratio_text(f.ratio) if f.ratio is not None else "",
            f"≥ {f.target:,.0f}" if f.target is not None else "",
            ("yes" if f.value >= f.target else "NO") if f.target is not None else "",
        )
        for f in figures
    ]
    _print_rows(title, header, rows, right=(1, 3, 4))
    for f in figures:
        if f.note:
            print(f"  · {f.name}: {f.note}")


def print_cpu(title: str, use: CpuUse, n: int) -> None:
    """CPU per process group over a phase: seconds, share of one core, and milliseconds per item."""
    cores = os.cpu_count() or 1
    known = sum(use.by_group.values())

    def row(name: str, cpu_s: float, share: str) -> tuple[str, ...]:
        return (name, f"{cpu_s:.1f}", share, f"{1000 * cpu_s / n:.3f}" if n else "")

    rows = [row(g, s, f"{100 * s / use.wall_s:.0f}%") for g, s in sorted(use.by_group.items())]
    rows.append(row("anything else (e.g. other sessions' tests)", max(0.0, use.machine_s - known), ""))
    rows.append(
        row(
            f"whole machine ({cores} cores)", use.machine_s, f"{100 * use.machine_s / (use.wall_s * cores):.0f}% of all"
        )
    )
    header = ("process group", "cpu s", "of one core", "cpu ms per item")
    _print_rows(f"CPU during {title}: {n:,} items in {use.wall_s:.1f} s", header, rows, (1, 2, 3))


def _print_rows(title: str, header: tuple[str, ...], rows: Sequence[tuple[str, ...]], right: tuple[int, ...]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    print(f"\n== {title}")
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))
