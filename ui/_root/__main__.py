"""``python -m neuromix``: the same entry point as the ``neuromix`` command."""

from neuromix.ui.cli import main

raise SystemExit(main())
