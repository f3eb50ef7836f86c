"""One module per ``bsrnas`` subcommand (see nas/cli.py)."""
