"""`python -m tests.bench.profiled_intake OUT` (from the repository root): `xinfang-intake serve` under
cProfile, stats written to OUT when it stops. uvicorn re-raises SIGTERM after its graceful shutdown (so the
exit code says how it ended); a Python handler installed first turns that into a normal return, so the
profile gets written."""

from __future__ import annotations

import cProfile
import signal
import sys


def main() -> None:
    out = sys.argv[1]
    from xinfang_intake.__main__ import main as intake_main

    signal.signal(signal.SIGTERM, lambda *_: None)
    sys.argv = ["xinfang-intake", "serve"]
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        intake_main()
    finally:
        profiler.disable()
        profiler.dump_stats(out)


if __name__ == "__main__":
    main()
