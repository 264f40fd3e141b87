from xinfang_shared.cli import run

from .app import MIGRATIONS
from .settings import RoutingSettings


def main() -> None:
    run(settings=RoutingSettings(), app="xinfang_routing.app:create_app", migrations=MIGRATIONS)


if __name__ == "__main__":
    main()
