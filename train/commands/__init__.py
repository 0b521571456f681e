"""Subcommands of the training package (synth, train, evaluate)."""
