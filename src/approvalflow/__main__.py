"""``python -m approvalflow``: the same as the ``approvalflow`` command."""

from .cli import main

if __name__ == "__main__":
    main()
