"""One spelling of command-line flags: hyphens (`--no-ema`, `--num-steps`).

    p = argparse.ArgumentParser(...)
    p.add_argument("--num-steps", type=int)
    args = cli_flags.parse_args(p, argv)    # "--num_steps 4" still works, with a notice

Commands declare their flags with hyphens (argparse gives `args.num_steps` either way). The
underscore spellings of earlier releases are rewritten to the declared flag before parsing,
each with one deprecation line on stderr, so old scripts keep working while they are updated.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def hyphenate(argv: Sequence[str], parser: argparse.ArgumentParser) -> list[str]:
    """argv with each `--old_name[=value]` that spells a declared `--old-name` rewritten.

    Tokens after a bare `--` are left alone; an underscore flag the parser declares itself is
    kept as it is. Prints "<prog>: --old_name is deprecated; use --old-name" on stderr for each.
    """
    declared = {s for action in parser._actions for s in action.option_strings}
    out: list[str] = []
    argv = list(argv)
    for i, token in enumerate(argv):
        if token == "--":
            out.extend(argv[i:])
            break
        name, sep, value = token.partition("=")
        if token.startswith("--") and "_" in name and name not in declared:
            new = "--" + name[2:].replace("_", "-")
            if new in declared:
                print(f"{parser.prog}: {name} is deprecated; use {new}", file=sys.stderr)
                token = new + sep + value
        out.append(token)
    return out


def parse_args(parser: argparse.ArgumentParser,
               argv: Sequence[str] | None = None) -> argparse.Namespace:
    """`parser.parse_args` of argv (default sys.argv[1:]) after `hyphenate`."""
    return parser.parse_args(hyphenate(sys.argv[1:] if argv is None else argv, parser))
