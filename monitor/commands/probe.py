"""`deepfake-monitor probe FILE...`: one line per file, what was found or why it is unusable."""

from __future__ import annotations

import argparse
import sys

HELP = "print streams, duration and rates of media files (or the error), one line per file"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE", help="media files or URLs")


def run(args: argparse.Namespace) -> int:
    from monitor.errors import MediaError
    from monitor.media.decode import probe

    failed = 0
    for f in args.files:
        try:
            print(probe(f).describe())
        except MediaError as exc:
            failed += 1
            print(f"{f}: ERROR {exc.reason}" + (f" ({exc.detail})" if exc.detail else ""))
    sys.stdout.flush()
    return 1 if failed else 0
