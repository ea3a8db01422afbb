"""Entry point: ``python -m loadtest --help``."""

from .cli import main

raise SystemExit(main())
