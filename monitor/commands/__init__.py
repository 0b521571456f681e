"""Subcommand modules of the `deepfake-monitor` CLI (see monitor/cli.py)."""
