"""``python -m initaudit``: the same as the ``initaudit`` command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
