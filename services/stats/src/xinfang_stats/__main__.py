import sys

from xinfang_shared.cli import run

from .app import MIGRATIONS
from .settings import StatsSettings


def main() -> None:
    if sys.argv[1:2] == ["rebuild"]:
        from .rebuild import main as rebuild

        rebuild(sys.argv[2:])
        return
    if sys.argv[1:2] == ["report"]:
        from .report_cli import main as report

        report(sys.argv[2:])
        return
    run(settings=StatsSettings(), app="xinfang_stats.app:create_app", migrations=MIGRATIONS)


if __name__ == "__main__":
    main()
