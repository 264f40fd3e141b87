from xinfang_shared.cli import run

from .app import MIGRATIONS, settings


def main() -> None:
    run(settings=settings, app="xinfang_intake.app:app", migrations=MIGRATIONS)


if __name__ == "__main__":
    main()
