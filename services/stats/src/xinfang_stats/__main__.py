from xinfang_shared.cli import run

from .app import MIGRATIONS
from .settings import StatsSettings


def main() -> None:
    run(settings=StatsSettings(), app="xinfang_stats.app:create_app", migrations=MIGRATIONS)


if __name__ == "__main__":
    main()
