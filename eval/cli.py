"""Command-line pieces every benchmark module shares (`python -m eval.<benchmark> --help`).

Every benchmark scores one or more models, each either a checkpoint or a predictions folder:

    --workdir W           our checkpoint: predict at the model's resolution, decode, then score
                          (the decoded predictions are written under OUT/predictions/NAME in the
                          benchmark's documented format, and scored like any folder)
    --predictions DIR     a folder of predictions of any model, in the documented format
    --name NAME           the report name of --workdir / --predictions (default: folder name)
    --baseline NAME=DIR   another predictions folder, scored by the same code (repeatable)
    --out OUT             results.json, report.md, charts and image grids go here
    --limit N             score only the first N items (a quick look; reports say so)

Options that differ between models (a baseline's depth PNG scale, its alignment, its normal
convention) take `VALUE` (every model) or `NAME=VALUE` (one model), repeatable: e.g.
`--alignment none --alignment marigold=least_squares`.

`main` functions raise on bad input (tests call them in-process); `run` is the entry point of
`python -m`, printing expected errors (a missing prediction file, a wrong format) as one line
(VB_EVAL_TRACEBACK=1 shows the traceback).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import re
import sys
from collections.abc import Callable, Iterable, Sequence

from tqdm import tqdm

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclasses.dataclass(frozen=True)
class Model:
    """A model to score: `kind` "checkpoint" (a training workdir) or "predictions" (a folder)."""

    name: str
    kind: str
    path: pathlib.Path

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "path": str(self.path)}


class PerModel(argparse.Action):
    """Stores {"": default, NAME: value} from repeated `VALUE` / `NAME=VALUE` arguments."""

    def __init__(self, option_strings, dest, *, type=str, choices=None, default=None, **kwargs):
        self.convert, self.allowed = type, choices
        super().__init__(option_strings, dest, default={"": default}, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        store = dict(getattr(namespace, self.dest) or {})
        name, sep, raw = str(values).partition("=")
        if not sep or not _NAME.match(name):
            name, raw = "", str(values)
        try:
            value = self.convert(raw)
        except ValueError:
            parser.error(f"{option_string} {values!r}: {raw!r} is not a valid value")
        if self.allowed is not None and value not in self.allowed:
            parser.error(f"{option_string} {values!r}: expected one of {', '.join(map(str, self.allowed))}")
        store[name] = value
        setattr(namespace, self.dest, store)


def per_model(args: argparse.Namespace, dest: str, model: str):
    """The value of a `PerModel` option for `model` (its own, else the default)."""
    store = getattr(args, dest)
    return store.get(model, store.get(""))


def make_parser(module: str, description: str, epilog: str) -> argparse.ArgumentParser:
    """A parser with the shared model / checkpoint / output options; add dataset options to it."""
    p = argparse.ArgumentParser(prog=f"python -m {module}", description=description, epilog=epilog,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    m = p.add_argument_group("models (--workdir or --predictions, plus any number of --baseline)")
    m.add_argument("--workdir", type=pathlib.Path,
                   help="training run directory: predict with its checkpoint, decode, then score")
    m.add_argument("--predictions", type=pathlib.Path,
                   help="predictions of any model in this benchmark's format (see below)")
    m.add_argument("--name", help="report name of the --workdir / --predictions model "
                                  "(default: the folder's name)")
    m.add_argument("--baseline", action="append", default=[], metavar="NAME=DIR",
                   help="another model's predictions folder, scored by the same code (repeatable)")
    c = p.add_argument_group("checkpoint (--workdir)")
    c.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    c.add_argument("--no-ema", action="store_true", help="use the raw weights, not the EMA")
    c.add_argument("--num-steps", type=int, help="sampler steps (default: the run's config)")
    c.add_argument("--ensemble", type=int, default=1,
                   help="seeds per input, combined in decoded space (default 1)")
    c.add_argument("--seed", type=int, default=0, help="base seed; item i uses seed + i")
    c.add_argument("--batch-size", type=int, default=8, help="inputs per predictor call")
    o = p.add_argument_group("output")
    o.add_argument("--out", type=pathlib.Path, required=True, help="folder for the results")
    o.add_argument("--limit", type=int, help="score only the first N items")
    o.add_argument("--worst", type=int, default=6, help="items in the worst-cases grid (0: none)")
    o.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def models_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace,
                     per_model_options: Sequence[str] = ()) -> list[Model]:
    """The models named on the command line, checked: folders exist, names are unique and every
    `NAME=VALUE` option names one of them. Usage errors exit through `parser.error`."""
    models = []
    if args.name is not None and not _NAME.match(args.name):
        parser.error(f"--name {args.name!r}: use letters, digits, _ . + - (it keys NAME=VALUE options)")
    if args.workdir is not None and args.predictions is not None:
        parser.error("give --workdir (a checkpoint) or --predictions (a folder), not both")
    for kind, path in (("checkpoint", args.workdir), ("predictions", args.predictions)):
        if path is not None:
            if not path.exists():
                flag = "--workdir" if kind == "checkpoint" else "--predictions"
                parser.error(f"{flag} {path} does not exist")
            name = args.name or path.resolve().name.removesuffix(path.suffix) or kind
            models.append(Model(name, kind, path))
    if args.name and not models:
        parser.error("--name names the --workdir / --predictions model; give one of them")
    for spec in args.baseline:
        name, sep, path = spec.partition("=")
        if not sep or not _NAME.match(name) or not path:
            parser.error(f"--baseline {spec!r}: expected NAME=DIR (NAME: letters, digits, _ . + -)")
        if not pathlib.Path(path).exists():
            parser.error(f"--baseline {spec!r}: {path} does not exist")
        models.append(Model(name, "predictions", pathlib.Path(path)))
    if not models:
        parser.error("nothing to score: give --workdir, --predictions or --baseline NAME=DIR")
    names = [m.name for m in models]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        parser.error(f"model names must be unique, got {dup} twice (use --name)")
    for dest in per_model_options:
        for name in getattr(args, dest):
            if name and name not in names:
                parser.error(f"--{dest.replace('_', '-')} {name}=...: no model named {name!r} "
                             f"(models: {', '.join(names)})")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be >= 1, got {args.limit}")
    if args.ensemble < 1:
        parser.error(f"--ensemble must be >= 1, got {args.ensemble}")
    return models


def limit_indices(count: int, limit: int | None) -> list[int]:
    """Indices 0..count-1, the first `limit` of them when given."""
    return list(range(count if limit is None else min(count, limit)))


def progress(iterable: Iterable, args: argparse.Namespace, **kwargs):
    """tqdm over `iterable` unless --no-progress."""
    return tqdm(iterable, disable=bool(getattr(args, "no_progress", False)), **kwargs)


def run_info(args: argparse.Namespace, argv: Sequence[str] | None) -> dict:
    """What produced a report: the command line and the options (JSON-able)."""
    options = {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in vars(args).items()}
    argv = list(sys.argv[1:] if argv is None else argv)
    return {"argv": argv, "options": json.loads(json.dumps(options, default=str))}


def run(main: Callable[[Sequence[str] | None], object]) -> None:
    """Entry point of `python -m eval.X`: expected failures (missing files, bad values) print one
    line and exit 1; set VB_EVAL_TRACEBACK=1 to see the traceback instead."""
    from data_mix.sources.base import RecordError

    try:
        main(None)
    except (FileNotFoundError, ValueError, KeyError, RecordError) as e:
        if os.environ.get("VB_EVAL_TRACEBACK"):
            raise
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)


def prediction_path(args, model, entry: dict, predict) -> pathlib.Path:
    """Where `model`'s predictions are read from: its own folder, or, for our checkpoint,
    OUT/predictions/NAME, filled first by `predict(folder)` (whose account of how the
    predictions were made goes to `entry["checkpoint"]`). Either way the folder is then scored
    by the same code."""
    if model.kind != "checkpoint":
        return model.path
    folder = args.out / "predictions" / model.name
    entry["checkpoint"] = predict(folder)
    return folder
