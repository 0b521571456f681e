"""`deepfake-monitor probe FILE...`: one line per file, what was found or why it is unusable.

A file name holding a line break or another control character is shown escaped (`\\n`),
so the output stays one line per file. A track much shorter than the other is reported as
a note (`| note: audio track 2.00s of 4.00s`): such a file is scored as it is.
"""

from __future__ import annotations

import argparse
import logging
import sys

HELP = "print streams, duration and rates of media files (or the error), one line per file"

logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE", help="media files or URLs")


def printable(text: str) -> str:
    """`text` with control characters (line breaks, tabs, ...) escaped as in Python."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def run(args: argparse.Namespace) -> int:
    from monitor.errors import MediaError
    from monitor.media.decode import probe

    failed = 0
    for f in args.files:
        try:
            line = probe(f).describe()
        except MediaError as exc:
            failed += 1
            line = f"{f}: ERROR {exc.reason}" + (f" ({exc.detail})" if exc.detail else "")
        except Exception as exc:  # a decoder bug on one file must not hide the others
            failed += 1
            logger.debug("probe %s", f, exc_info=True)
            line = f"{f}: ERROR unexpected {type(exc).__name__} ({exc})"
        print(printable(line))
    sys.stdout.flush()
    return 1 if failed else 0
