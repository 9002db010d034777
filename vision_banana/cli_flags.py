"""One spelling of command-line flags: hyphens (`--no-ema`, `--num-steps`).

    p = argparse.ArgumentParser(...)
    p.add_argument("--num-steps", type=int)
    args = cli_flags.parse_args(p, argv)    # "--num_steps 4" still works, with a notice

Commands declare their flags with hyphens (argparse gives `args.num_steps` either way). The
underscore spellings of earlier releases are rewritten to the declared flag before parsing,
each with one deprecation line on stderr, so old scripts keep working while they are updated.

Argument checks that commands run before any loading or generating (each raises ValueError
with one line naming the flag, the value and what was expected):

    cli_flags.at_least("--ensemble", args.ensemble, 1)
    out = cli_flags.output_file("--out", args.out, (".png",))   # folder exists and is writable
    cli_flags.input_file("--image", args.image)
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
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


def at_least(flag: str, value: float | None, minimum: float) -> None:
    """ValueError unless `value` is None (not given) or >= minimum."""
    if value is not None and value < minimum:
        raise ValueError(f"{flag} {value}: must be >= {minimum}")


def output_file(flag: str, path: str, suffixes: Sequence[str]) -> pathlib.Path:
    """`path` as a file to write: one of `suffixes` (lower case, with the dot), not a folder,
    in an existing folder that accepts a new file (tried for real: permission bits say nothing
    for root, nor for read-only mounts)."""
    out = pathlib.Path(path)
    if out.suffix.lower() not in suffixes or out.is_dir():
        raise ValueError(f"{flag} {path}: expected a {' / '.join(suffixes)} file name")
    folder = out.parent
    if not folder.is_dir():
        raise ValueError(f"{flag} {path}: folder {folder} does not exist")
    try:
        tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-").close()
    except OSError as e:
        raise ValueError(f"{flag} {path}: folder {folder} is not writable ({e.strerror})") from None
    return out


def input_file(flag: str, path: str) -> pathlib.Path:
    """`path` as an existing file to read."""
    if not pathlib.Path(path).is_file():
        raise ValueError(f"{flag} {path}: no such file")
    return pathlib.Path(path)
