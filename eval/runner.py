"""The one benchmark driver: every `python -m eval.<benchmark>` is a `Benchmark` run by `run`.

    class Depth(runner.Benchmark):
        module, task, extensions = "eval.depth", "depth", (".npy", ".png")
        def open(self): return sources.NYUv2Source(...)          # the dataset
        def job(self, item, record, n): ...                        # our checkpoint's prompt
        def read(self, model, item, gt): ...                       # one prediction file
        def accumulate(self, ev, item, pred, gt): ...              # score it, return its record
        def report(self, entries): ...                             # title, columns, intro, ...

    def main(argv=None): return runner.run(Depth, __doc__, EPILOG, argv)

The runner owns what every benchmark repeats, in this order:

1. the parser (`cli.make_parser` + the benchmark's `add_options`) and the models it names:
   our checkpoint (`--workdir`), predictions folders (`--predictions`, `--baseline NAME=DIR`);
2. the dataset (`open`) and the scored record indices (`--limit`);
3. for a checkpoint: its predictions, made through `eval.from_checkpoint.predict_into` (the
   Predictor's geometry) from the benchmark's `jobs`, written by `write` into
   OUT/predictions/NAME in the benchmark's own format, then scored like any folder;
4. scoring: per record, its items (`items`: an image, an expression, a case), their ground
   truth (`truth`), each model's prediction (`read` / `measure`, optionally on threads) added to
   the model's evaluator (`evaluator`, from `eval.metrics.for_task`; `accumulate` returns the
   item's per-image record);
5. per model: the result (`result`), its entry in results.json (`entry`: predictions folder,
   per-model options, `unused_files` = prediction files no item asked for), and the grid of its
   worst items (`worst_order`, `panels`, `row_title`) as OUT/worst_<model>.png;
6. charts (`charts`), reference rows and report.md / results.json (`report`, `eval.report`),
   with the run's command line (`cli.run_info`).

A benchmark overrides only what differs; defaults fit "one prediction file per record id".
"""

from __future__ import annotations

import abc
import argparse
import concurrent.futures
import dataclasses
import pathlib
from collections.abc import Iterator, Sequence
from typing import Any

from eval import cli, report
from eval import predictions as preds
from eval.metrics import for_task
from eval.references import references_for


@dataclasses.dataclass
class Item:
    """One scored unit: `key` names its prediction; `index` is its dataset record; `info`
    holds what the benchmark keeps for grids and records (an expression's text, ...)."""

    key: str
    index: int
    info: dict = dataclasses.field(default_factory=dict)


class Benchmark(abc.ABC):
    """A benchmark's declaration; see the module docstring for the order the runner calls it."""

    module = ""                      # "eval.depth"
    task = ""                        # codec task of the checkpoint path (tasks.get(task))
    extensions: tuple[str, ...] = (".png",)
    per_model_options: tuple[str, ...] = ()     # dests of cli.PerModel options
    checkpoint_options: dict = {}    # per-model option values of our checkpoint's own folder
    worst_caption = "Worst images"
    ensemble: int | None = None      # forced --ensemble of the checkpoint path (None: the flag)
    index_records = True             # per-item records get "index" (their dataset record)

    def __init__(self, parser: argparse.ArgumentParser, args: argparse.Namespace):
        self.parser, self.args, self.out = parser, args, args.out
        self.readers: dict[str, Any] = {}

    # --------------------------------------------------------------- dataset and items
    @staticmethod
    def add_options(group) -> None:
        """Adds the dataset options to the parser's "dataset" group."""

    @abc.abstractmethod
    def open(self):
        """The dataset (a sequence of records); usage errors through `self.parser.error`."""

    def load(self, i: int):
        """Record i as scoring needs it (default: the source's record)."""
        return self.source[i]

    def items(self, i: int, record) -> list[Item]:
        """The scored items of record i (default: one, keyed by `record["meta"]["id"]`)."""
        return [Item(record["meta"]["id"], i)]

    truth_key = ""                   # the record field holding the ground truth

    def truth(self, item: Item, record):
        """The ground truth of `item` (default: `record[truth_key]`)."""
        return record[self.truth_key]

    # ---------------------------------------------------------------- checkpoint path
    def jobs(self, indices: Sequence[int]) -> Iterator:
        """`from_checkpoint.Job`s of our checkpoint; item n (in order) draws its prompt with
        seed --seed + n."""
        from eval import from_checkpoint

        n = 0
        for i in indices:
            record = self.source[i]
            for item in self.items_of_jobs(i, record):
                prompt, spec = self.job(item, record, n)
                n += 1
                yield from_checkpoint.Job(item.info.get("job_key", item.key), record["image"], prompt, spec)

    def items_of_jobs(self, i: int, record) -> list[Item]:
        """The items our checkpoint generates for (default: the scored items, `items`)."""
        return self.items(i, record)

    @abc.abstractmethod
    def job(self, item: Item, record, n: int) -> tuple[str, dict]:
        """(prompt, decode spec) of one item."""

    write_as: tuple = ()             # (extension, writer): how `write` stores a decoded prediction

    def write(self, folder: pathlib.Path, job, decoded) -> None:
        """Writes one decoded prediction into `folder` (default: `write_as`, named by its key)."""
        ext, writer = self.write_as
        writer(folder / f"{job.key}{ext}", decoded)

    def after_predict(self, folder: pathlib.Path, made: dict) -> dict:
        """Called once every job is written; returns the checkpoint account for results.json."""
        return made

    def predict(self, folder: pathlib.Path, indices: Sequence[int]) -> dict:
        from eval import from_checkpoint

        made = from_checkpoint.predict_into(
            self.args, self.jobs(indices), self.task, lambda job, out: self.write(folder, job, out),
            total=self.num_jobs(indices), ensemble=self.ensemble)
        return self.after_predict(folder, made)

    def num_jobs(self, indices: Sequence[int]) -> int | None:
        return len(indices)

    # ---------------------------------------------------------------- scoring
    def open_predictions(self, model: cli.Model, path: pathlib.Path):
        """The reader of a model's predictions (default: a `PredictionFolder`)."""
        return preds.PredictionFolder(path, self.extensions, f"model {model.name!r}")

    def option(self, dest: str, model: cli.Model):
        """A per-model option's value for `model` (our checkpoint: `checkpoint_options`)."""
        if model.kind == "checkpoint" and dest in self.checkpoint_options:
            return self.checkpoint_options[dest]
        return cli.per_model(self.args, dest, model.name)

    def evaluator(self, model: cli.Model):
        """The model's evaluator (default: `eval.metrics.for_task(task)`)."""
        return for_task(self.task)

    resize = "nearest"               # eval.predictions.RESIZERS kind bringing a file to gt size

    read_as = None                   # reader of one prediction file (eval.predictions.read_*)

    def read_file(self, model: cli.Model, path: pathlib.Path):
        """One prediction file as an array (default: `read_as(path)`)."""
        return type(self).read_as(path)

    def gt_size(self, gt) -> tuple[int, int]:
        return gt.shape[:2]

    def read(self, model: cli.Model, item: Item, gt):
        """`model`'s prediction of `item` at the ground truth's size (default: `read_file` of the
        folder's file, resized with `resize` when smaller with the same aspect)."""
        path = self.readers[model.name].path(item.key)
        return preds.to_size(self.read_file(model, path), self.gt_size(gt), self.resize, str(path))

    def measure(self, model: cli.Model, item: Item, gt):
        """What `accumulate` adds (runs on `threads()` worker threads); default `read`."""
        return self.read(model, item, gt)

    def accumulate(self, evaluator, item: Item, measured, gt) -> dict:
        """Adds one item to the evaluator; returns its per-item record (a dict; {} if skipped)."""
        return evaluator.add(measured, gt, name=item.key) or {}

    def threads(self) -> int:
        return 1

    def result(self, model: cli.Model, evaluator, records: list[tuple[Item, dict]]) -> dict:
        return evaluator.result()

    def finish(self, evaluators: dict) -> None:
        """Called after scoring, before the results (e.g. strata from a scored model)."""

    def entry(self, model: cli.Model) -> dict:
        """Entry fields besides model / result: the predictions, per-model options, unused files."""
        reader = self.readers[model.name]
        root = getattr(reader, "root", getattr(reader, "path", None))
        return {"predictions": str(root),
                **{dest: self.option(dest, model) for dest in self.per_model_options},
                "unused_files": reader.unused()}

    # ---------------------------------------------------------------- worst cases
    worst_key = ""                   # the record's value ranking the grid ("abs_rel")
    worst_highest = False            # True: the highest value is the worst
    worst_label = ""                 # row caption, e.g. "AbsRel"
    worst_digits = 3
    grid_columns: tuple[str, ...] = ("input", "{name}", "ground truth")
    grid_title = "{name}"            # formatted with name= (the model) and args=

    def worst_order(self, record: dict):
        """Sort key of a record, worst first (undefined values last); None: not in the grid."""
        if self.worst_key not in record:
            return None
        v = record[self.worst_key]
        return (v is None, 0 if v is None else (-v if self.worst_highest else v), str(record.get("name", "")))

    @abc.abstractmethod
    def panels(self, model: cli.Model, item: Item, r: dict, record, gt, pred) -> list:
        """uint8 RGB panels of one grid row (r: the item's scores; record, gt, pred: as `load`,
        `truth` and `read` give them)."""

    def grid(self, model: cli.Model) -> tuple[list[str], str]:
        """(column titles, title) of the worst-case grid."""
        return ([c.format(name=model.name) for c in self.grid_columns],
                self.grid_title.format(name=model.name, args=self.args))

    def row_title(self, item: Item, record: dict) -> str:
        return f"{item.key}\n{self.worst_label} {report.fmt(record[self.worst_key], self.worst_digits)}"

    # ---------------------------------------------------------------- report
    def charts(self, entries: dict, references: list) -> dict:
        """caption -> PNG path of the benchmark's charts."""
        return {}

    def chart(self, file: str, groups: Sequence[str], values, entries: dict, references=(), *,
              ylabel: str, title: str, ylim=None, paper=()) -> pathlib.Path:
        """A bar chart of `values(result)` (one list per model, one value per group) beside the
        references' `paper` metrics (one name per group, None: no bar)."""
        series = {n: values(e["result"]) for n, e in entries.items()}
        series.update({f"{r.model} (paper)": [r.metrics.get(k) if k else None for k in paper]
                       for r in references if paper})
        return report.bar_chart(self.out / file, groups, series, ylabel=ylabel, title=title, ylim=ylim)

    benchmark = ""                   # results.json "benchmark" id, formatted with args=
    title = ""                       # report title, formatted with args= and source=
    columns: tuple = ()              # report.Column of the results table
    unit, limit_unit = "images", ""  # what the intro counts; what "--limit" says it cut

    dataset_text = ""                # the intro's dataset, formatted with args=
    dataset_info: dict = {}          # results.json "dataset" field -> args attribute
    count_key = "num_images"         # results.json "dataset" field of the scored count
    protocol_text = ""               # the intro's protocol line, formatted with args=
    reference_key = ""               # eval.references key, formatted with args=

    def dataset(self) -> tuple[str, dict]:
        """(the intro's dataset text, where "{counts}" places "(N images...)" (default: at the
        end); results.json "dataset" fields besides "num_available")."""
        info = {k: (str(v) if isinstance(v, pathlib.Path) else v)
                for k, v in ((k, getattr(self.args, a)) for k, a in self.dataset_info.items())}
        return self.dataset_text.format(args=self.args), {**info, self.count_key: len(self.indices)}

    def report_columns(self) -> list:
        return list(self.columns)

    def protocol(self, entries: dict) -> list[str]:
        """Intro lines after the dataset line."""
        return [self.protocol_text.format(args=self.args)] if self.protocol_text else []

    def references(self) -> list:
        return references_for(self.reference_key.format(args=self.args)) if self.reference_key else []

    def need(self, *dests: str, what: str = "") -> None:
        """A usage error unless every option `dests` was given (`what`: who needs them)."""
        missing = [d for d in dests if getattr(self.args, d) is None]
        if missing:
            self.parser.error(f"{what or '--dataset ' + self.args.dataset} needs "
                              + ", ".join("--" + m.replace("_", "-") for m in missing))

    def sections(self, entries: dict) -> list[str]:
        return []

    def shown(self, entries: dict) -> dict:
        """The report's rows (default: the scored models)."""
        return entries

    def limit_note(self, count: int, what: str = "") -> str:
        if not self.args.limit:
            return ""
        return f"; first {count} of {len(self.source)}{' ' + what if what else ''} (--limit)"

    def write_report(self, entries: dict, figures: dict, references: list, argv) -> None:
        n = len(self.indices)
        text, info = self.dataset()
        counts = f"({n} {self.unit}{self.limit_note(n, self.limit_unit)})"
        intro = [f"Dataset: {text.replace('{counts}', counts) if '{counts}' in text else f'{text} {counts}'}"]
        # How the reader read its ground truth (which file or variant, an unverified convention).
        notes = list(getattr(self.source, "notes", ()))
        report.write_report(
            self.out, benchmark=self.benchmark.format(args=self.args), models=self.shown(entries),
            title=self.title.format(args=self.args, source=self.source), columns=self.report_columns(),
            references=references, intro=intro + self.protocol(entries) + notes,
            sections=self.sections(entries),
            figures=figures, extra={"dataset": {**info, "num_available": len(self.source), "notes": notes},
                                    **self.extra(), "run": cli.run_info(self.args, argv)})

    def extra(self) -> dict:
        """More results.json keys."""
        return {}


def _worst_grid(bench: Benchmark, model: cli.Model, records: list[tuple[Item, dict]], k: int):
    ranked = sorted(((bench.worst_order(r), n) for n, (_, r) in enumerate(records)
                     if bench.worst_order(r) is not None))[:k]
    rows, titles = [], []
    for _, n in ranked:
        item, r = records[n]
        data = bench.load(item.index)
        gt = bench.truth(item, data)
        panels = bench.panels(model, item, r, data, gt, bench.read(model, item, gt))
        rows.append([report.thumbnail(p) for p in panels])
        titles.append(bench.row_title(item, r))
    columns, title = bench.grid(model)
    return report.image_grid(bench.out / f"worst_{model.name}.png", rows, col_titles=columns,
                             row_titles=titles, title=title)


def score(bench: Benchmark, models: list[cli.Model], indices: Sequence[int]):
    """Scores every model on `indices`: ({name: evaluator}, {name: [(item, record)]})."""
    evaluators = {m.name: bench.evaluator(m) for m in models}
    records: dict[str, list] = {m.name: [] for m in models}

    def measure(i):
        record = bench.load(i)
        out = []
        for item in bench.items(i, record):
            gt = bench.truth(item, record)
            out.append((item, gt, [bench.measure(m, item, gt) for m in models]))
        return out

    threads = max(1, bench.threads())
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        done = pool.map(measure, indices) if threads > 1 else map(measure, indices)
        for per_record in cli.progress(done, bench.args, total=len(indices), desc=f"score {bench.module}",
                                       unit="img"):
            for item, gt, measured in per_record:
                for model, value in zip(models, measured, strict=True):
                    rec = bench.accumulate(evaluators[model.name], item, value, gt)
                    if bench.index_records:  # the record is the evaluator's own: results.json shows it
                        rec.setdefault("index", item.index)
                    records[model.name].append((item, rec))
    return evaluators, records


def main_of(benchmark: type[Benchmark], doc: str, epilog: str):
    """The `main(argv=None) -> {name: entry}` of a benchmark module (tests call it in-process;
    `python -m` runs it through `cli.run`)."""
    def main(argv: Sequence[str] | None = None) -> dict:
        return run(benchmark, doc, epilog, argv)
    main.__doc__ = f"Runs {benchmark.module} (see its module docstring); returns {{model name: entry}}."
    return main


def run(benchmark: type[Benchmark], doc: str, epilog: str, argv: Sequence[str] | None = None) -> dict:
    """Parses `argv`, scores every model and writes the report; returns {name: entry}."""
    parser = cli.make_parser(benchmark.module, doc.split("\n\n")[0], epilog)
    benchmark.add_options(parser.add_argument_group("dataset"))
    args = parser.parse_args(argv)
    models = cli.models_from_args(parser, args, benchmark.per_model_options)
    bench = benchmark(parser, args)
    bench.models = models
    bench.source = bench.open()
    indices = cli.limit_indices(len(bench.source), args.limit)
    bench.indices = indices
    entries = {}
    for model in models:
        entries[model.name] = {"model": model.to_json()}
        path = cli.prediction_path(args, model, entries[model.name],
                                   lambda folder: bench.predict(folder, indices))
        bench.readers[model.name] = bench.open_predictions(model, path)
    evaluators, records = score(bench, models, indices)
    bench.records = records
    bench.finish(evaluators)
    figures = {}
    for model in models:
        entry = entries[model.name]
        entry["result"] = bench.result(model, evaluators[model.name], records[model.name])
        entry.update(bench.entry(model))
        if args.worst > 0 and any(bench.worst_order(r) is not None for _, r in records[model.name]):
            figures[f"{bench.worst_caption}: {model.name}"] = _worst_grid(bench, model, records[model.name],
                                                                          args.worst)
    references = bench.references()
    bench.write_report(entries, {**bench.charts(entries, references), **figures}, references, argv)
    return entries
