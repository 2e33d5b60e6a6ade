"""`python -m phantom`: the generator's command line (phantom/cli.py)."""

from phantom.cli import main

raise SystemExit(main())
