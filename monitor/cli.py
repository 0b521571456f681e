"""`deepfake-monitor`: one command, thin subcommands over functions callable from Python.

Each subcommand lives in its package's `commands/` folder (`monitor/commands/`,
`train/commands/`, `engines/commands/`), one module per subcommand exposing `HELP`,
`add_arguments(parser)` and `run(args) -> int`; heavy imports (torch, aiortc) happen
inside `run`, so `--help` is fast and the slim runtime never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from monitor.errors import DeepfakeMonitorError
from monitor.redaction import redact

logger = logging.getLogger(__name__)

# subcommand -> module; order is the order shown in --help
COMMANDS: dict[str, str] = {
    "synth": "train.commands.synth",
    "probe": "monitor.commands.probe",
    "faces": "monitor.commands.faces",
    "train": "train.commands.train",
    "evaluate": "train.commands.evaluate",
    "calibrate": "train.commands.calibrate",
    "watch": "monitor.commands.watch",
    "serve": "monitor.commands.serve",
    "replay": "monitor.commands.replay",
    "score": "monitor.commands.score",
    "merge": "monitor.commands.merge",
    "export": "engines.commands.export",
    "build-engine": "engines.commands.build_engine",
    "export-triton": "engines.commands.export_triton",
    "mixin": "monitor.commands.mixin",
    "demo": "monitor.commands.demo",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepfake-monitor",
        description="Real-time multimodal (voice + face) deepfake monitor.",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            # e.g. the slim runtime without the `train` extra: say so when the command is used
            p = sub.add_parser(name, help=f"(unavailable: {exc})")
            p.set_defaults(_run=_unavailable(name, exc))
            continue
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _unavailable(name: str, exc: ImportError) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        print(
            f"deepfake-monitor {name}: unavailable in this installation ({exc}); "
            "install the matching extra, e.g. pip install 'deepfake-monitor[train]'",
            file=sys.stderr,
        )
        return 2

    return run


class RedactingFilter(logging.Filter):
    """Strips credentials from every log line, whoever wrote it (libraries too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message or record.exc_info:
            if record.exc_info:  # a traceback may quote a URL too: render it, then redact
                clean = redact(
                    message + "\n" + logging.Formatter().formatException(record.exc_info)
                )
                record.exc_info, record.exc_text = None, None
            record.msg, record.args = clean, None
        return True


def configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        return int(args._run(args) or 0)
    except DeepfakeMonitorError as exc:
        print(f"deepfake-monitor {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"deepfake-monitor {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
