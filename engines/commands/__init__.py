"""CLI subcommands of the engines package: export, build-engine, export-triton."""
