from xinfang_shared.cli import run

from .app import MIGRATIONS
from .settings import SupervisionSettings


def main() -> None:
    run(settings=SupervisionSettings(), app="xinfang_supervision.app:create_app", migrations=MIGRATIONS)


if __name__ == "__main__":
    main()
