"""`deepfake-monitor merge OUT SHARD...`: combine `score --shard i/n` outputs into one file.

Without `--names`, the shards' summaries must show one complete set (every shard i of n
of one input list, once); see monitor/offline/merge.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "merge shard prediction files, checking every video appears exactly once"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", type=Path, metavar="OUT", help="merged prediction file to write")
    p.add_argument("shards", nargs="+", type=Path, metavar="SHARD", help="shard prediction files")
    p.add_argument(
        "--names",
        default=None,
        metavar="DATA",
        help="the folder or name list that was scored: check none is missing, keep its order "
        "(without it, the shards' summaries must show a complete set)",
    )
    p.add_argument("--video-dir", type=Path, default=None, help="where a list's videos are")


def run(args: argparse.Namespace) -> int:
    from monitor.errors import OutputError
    from monitor.offline.merge import merge_shards
    from monitor.offline.predictions import os_reason

    try:
        result = merge_shards(args.out, args.shards, names=args.names, video_dir=args.video_dir)
    except OSError as exc:  # any I/O failure not named nearer: one line, not a traceback
        where = exc.filename if exc.filename is not None else args.out
        raise OutputError(f"{where}: {os_reason(exc)}") from exc
    print(f"{result.out}: {result.rows} videos from {result.shards} shards, {result.errors} errors")
    return 0
