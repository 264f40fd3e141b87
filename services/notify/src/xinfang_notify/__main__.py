from xinfang_shared.cli import run

from .app import MIGRATIONS
from .settings import NotifySettings


def main() -> None:
    run(settings=NotifySettings(), app="xinfang_notify.app:create_app", migrations=MIGRATIONS)


if __name__ == "__main__":
    main()
