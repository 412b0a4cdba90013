"""``python -m jaxrnn``: the ``jaxrnn`` command."""

from jaxrnn.cli import main

raise SystemExit(main())
