"""The trainer: `train_and_evaluate(config, workdir)`, and its CLI.

    python -m vision_banana.train --config=vision_banana/configs/tiny.py --workdir=runs/tiny \
        --config.train.steps=100

One jitted train step (`jax.jit` on the split NNX state, donated, explicit in/out shardings on
the (data, fsdp, tensor) mesh); the step is a pure function of (state, batch): its PRNG key is
fold_in(key(config.seed), step). State = {step, params (trainable, float32 master weights),
opt_state, ema, model_state (frozen parameters and other variables)}.

Resume: the latest checkpoint under `<workdir>/checkpoints` (params, optimizer, EMA and the data
iterator position) is restored automatically; a restarted run continues bit-identically on the
same hardware. A non-finite loss or gradient norm stops the run with `TrainingDiverged`
naming the step; no state is saved after it, so the last good checkpoint stays the latest.

Pretrained start (`config.init_from`): a fresh run imports the checkpoint's weights into its
sharded state (vision_banana.init_from); its checkpoints omit the frozen pretrained weights,
which a resume re-imports from `init_from`.

Outputs under the workdir: config.json, metrics.jsonl, tb/ (TensorBoard), checkpoints/,
samples/ (PNG grids). Only process 0 writes logs; every process takes part in checkpoints.
"""

from __future__ import annotations

import logging
import pathlib
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm import tqdm

from vision_banana import (
    checkpoint,
    evaluators,
    failures,
    init_from,
    metrics_io,
    model_factory,
    optim,
    preemption,
    sharding,
)
from vision_banana import workdir as run_dir
from vision_banana.models import stacking

State = dict[str, Any]


class TrainingDiverged(FloatingPointError):
    """The loss or the gradient norm became NaN or infinite."""


# ---------------------------------------------------------------------------------- state


def make_init_fn(config, tx: optax.GradientTransformation) -> Callable[[], State]:
    """() -> fresh train state (pure; run it under jit / eval_shape)."""
    use_ema = float(config.optim.ema_decay) > 0

    def init() -> State:
        _, params, model_state = model_factory.build_model(config)
        return {"step": jnp.zeros((), jnp.int32), "params": params,
                "opt_state": tx.init(params),
                "ema": jax.tree.map(jnp.copy, params) if use_ema else None,
                "model_state": model_state}

    return init


def abstract_state(config, tx, mesh, rules):
    """(graphdef, abstract state, shardings of the state, tokenizer); nothing allocated."""
    graphdef, _, _, tokenizer = model_factory.abstract_model(config)
    abstract = jax.eval_shape(make_init_fn(config, tx))
    shardings = sharding.tree_shardings(abstract, mesh, rules)
    return graphdef, abstract, shardings, tokenizer


def make_train_step(config, graphdef, tx, schedule, num_tasks: int) -> Callable:
    """(state, batch) -> (state, metrics): one update, pure. See module docstring."""
    from vision_banana import flow

    decay = float(config.optim.ema_decay)
    base_key = int(config.seed)
    trainable = model_factory.trainable_filter(config.train.trainable)

    def train_step(state: State, batch: dict[str, jax.Array]) -> tuple[State, dict]:
        key = jax.random.fold_in(jax.random.key(base_key), state["step"])

        def loss_fn(params):
            model = nnx.merge(graphdef, params, state["model_state"])
            loss, aux = flow.training_loss(model, batch, key, config.flow)
            # Variables the forward pass updated (RNG counters, ...); frozen params unchanged.
            _, _, model_state = nnx.split(model, trainable, ...)
            return loss, (aux, model_state)

        (loss, (aux, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state["params"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        per_example = aux["per_example_loss"].astype(jnp.float32)
        task_id = batch["task_id"]
        new_state = {"step": state["step"] + 1, "params": params, "opt_state": opt_state,
                     "ema": (optim.ema_update(state["ema"], params, decay)
                             if state["ema"] is not None else None),
                     "model_state": model_state}
        metrics = {
            "loss": loss.astype(jnp.float32),
            "grad_norm": optim.global_norm(grads),
            "param_norm": optim.global_norm(params),
            "lr": jnp.asarray(schedule(state["step"]), jnp.float32),
            "task_loss_sum": jax.ops.segment_sum(per_example, task_id, num_tasks),
            "task_count": jax.ops.segment_sum(jnp.ones_like(per_example), task_id, num_tasks),
        }
        return new_state, metrics

    return train_step


def batch_shapes(config, tokenizer) -> dict[str, jax.ShapeDtypeStruct]:
    """Global shapes of one batch (docs/contracts.md "Batches")."""
    b = int(config.train.global_batch_size)
    h, w = model_factory.resolution(config)
    length = np.asarray(tokenizer(["x"])).shape[1]
    return {"image": jax.ShapeDtypeStruct((b, h, w, 3), jnp.uint8),
            "has_image": jax.ShapeDtypeStruct((b,), jnp.bool_),
            "target": jax.ShapeDtypeStruct((b, h, w, 3), jnp.uint8),
            "tokens": jax.ShapeDtypeStruct((b, length), jnp.int32),
            "task_id": jax.ShapeDtypeStruct((b,), jnp.int32)}


def compile_train_step(config, graphdef, tx, schedule, abstract, shardings, batch_abstract,
                       mesh, rules):
    """Ahead-of-time compiled train step (fails here, before any data, if it cannot fit)."""
    step = make_train_step(config, graphdef, tx, schedule, len(config.tasks))
    batch_shardings = {k: sharding.batch_sharding(mesh, rules) for k in batch_abstract}
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    jitted = jax.jit(step, in_shardings=(shardings, batch_shardings),
                     out_shardings=(shardings, replicated), donate_argnums=0)
    with sharding.activate(mesh, sharding.activation_rules(rules)):
        lowered = jitted.lower(sharding.abstract_with_shardings(abstract, shardings),
                               sharding.abstract_with_shardings(batch_abstract, batch_shardings))
        return lowered.compile(compiler_options=model_factory.xla_options(config) or None)


# ---------------------------------------------------------------------------------- data


def make_data_iterator(config, tokenizer, *, data_config=None, start_batch: int = 0):
    """This process's iterator over local batches of `config.data` (or `data_config`)."""
    from data_mix.iterator import make_iterator
    from data_mix.mixture import Mixture

    mixture = Mixture(data_config if data_config is not None else config.data)
    return make_iterator(mixture, global_batch_size=int(config.train.global_batch_size),
                         process_index=jax.process_index(), process_count=jax.process_count(),
                         tokenize=tokenizer, task_names=list(config.tasks),
                         start_batch=start_batch, num_workers=int(config.train.data_workers))


def _contract(batch: dict) -> dict[str, np.ndarray]:
    missing = [k for k in model_factory.BATCH_KEYS if k not in batch]
    if missing:
        raise KeyError(f"data batch lacks {missing} (has {sorted(batch)}); see "
                       f"docs/contracts.md 'Batches'")
    return {k: np.asarray(batch[k]) for k in model_factory.BATCH_KEYS}


# ---------------------------------------------------------------------------------- loop


class _MetricBuffer:
    """Device metrics of recent steps, fetched together (one host sync per log interval)."""

    def __init__(self, task_names: list[str], ckpt_dir: pathlib.Path):
        self.task_names = task_names
        self.ckpt_dir = ckpt_dir
        self.pending: list[tuple[int, dict]] = []
        self.checked = 0  # pending[:checked] are known finite

    def add(self, step: int, metrics: dict) -> None:
        self.pending.append((step, metrics))

    def check(self, last_good: int | None) -> None:
        """Raise TrainingDiverged if a buffered step had a NaN / inf loss or gradient norm."""
        new = self.pending[self.checked:]
        signals = jax.device_get([(m["loss"], m["grad_norm"]) for _, m in new])
        for (step, _), (loss, grad_norm) in zip(new, signals):
            if not (np.isfinite(loss) and np.isfinite(grad_norm)):
                raise TrainingDiverged(
                    f"non-finite training signal at step {step + 1}: loss={float(loss)}, "
                    f"grad_norm={float(grad_norm)}. Stopped; nothing after it was saved. Last "
                    f"good checkpoint: {'none' if last_good is None else f'step {last_good}'} "
                    f"in {self.ckpt_dir}")
        self.checked = len(self.pending)

    def drain(self, last_good: int | None) -> dict[str, float]:
        """Host means over the buffered steps (checked first), then empty the buffer."""
        self.check(last_good)
        host = jax.device_get([m for _, m in self.pending])
        self.pending, self.checked = [], 0
        out = {k: float(np.mean([m[k] for m in host])) for k in ("loss", "grad_norm",
                                                                "param_norm")}
        out["lr"] = float(host[-1]["lr"])
        sums = np.sum([m["task_loss_sum"] for m in host], axis=0)
        counts = np.sum([m["task_count"] for m in host], axis=0)
        for name, s, c in zip(self.task_names, sums, counts):
            if c > 0:
                out[f"loss/{name}"] = float(s / c)
        return out


def _check_config(config) -> None:
    for key in ("log_every", "checkpoint_every", "global_batch_size"):
        if int(config.train[key]) < 1:
            raise ValueError(f"train.{key}={config.train[key]} must be >= 1")
    if not config.tasks:
        raise ValueError("config.tasks is empty; it lists the task names batches index")
    b = int(config.train.global_batch_size)
    if b % jax.process_count():
        raise ValueError(f"train.global_batch_size={b} is not divisible by the process count "
                         f"{jax.process_count()}")
    if int(config.train.steps) < 0:
        raise ValueError(f"train.steps={config.train.steps} must be >= 0")


def use_compilation_cache(path: str) -> None:
    """Persist compiled programs under `path` for this process (and later runs).

    Applies even if something was compiled before (jax otherwise decides once per process).
    """
    from jax.experimental.compilation_cache import compilation_cache

    if jax.config.jax_compilation_cache_dir != path:
        compilation_cache.set_cache_dir(path)
        compilation_cache.reset_cache()


def train_and_evaluate(config, workdir: str | pathlib.Path) -> State:
    """Train `config` in `workdir` (resuming from its latest checkpoint); returns the state.

    Raises TrainingDiverged on a NaN / inf loss or gradient norm (the last good checkpoint is
    kept), ValueError on inconsistent configs (naming the key), workdir.ConfigChanged when the
    workdir's run was made with another config, workdir.WorkdirLocked when another trainer
    holds the workdir (vision_banana.workdir). `config.json` is written only once the run has
    started fresh or restored its checkpoint, so a refused rerun leaves the run loadable.
    """
    workdir = pathlib.Path(workdir)
    is_main = jax.process_index() == 0
    _check_config(config)
    # The block layout of an existing run's checkpoints wins over the config's default.
    stacking.keep_saved_layout(config, workdir / run_dir.CONFIG_NAME)
    config_changes = run_dir.check_config(config, workdir)  # before anything is written
    if is_main:
        workdir.mkdir(parents=True, exist_ok=True)
    with run_dir.WorkdirLock(workdir, enabled=is_main):  # only process 0 of a job takes it
        return _train(config, workdir, config_changes)


def _train(config, workdir: pathlib.Path, config_changes: dict) -> State:
    is_main = jax.process_index() == 0
    if config.train.compilation_cache_dir:
        use_compilation_cache(str(config.train.compilation_cache_dir))
    mesh = sharding.make_mesh(config)
    rules = sharding.rules_from_config(config)
    total = int(config.train.steps)
    gbs = int(config.train.global_batch_size)
    if gbs % sharding.batch_shards(mesh, rules):
        raise ValueError(f"train.global_batch_size={gbs} is not divisible by the "
                         f"{sharding.batch_shards(mesh, rules)} batch shards of mesh "
                         f"{dict(mesh.shape)}")
    writer = metrics_io.MetricWriter(workdir, enabled=is_main)

    decay_steps = optim.decay_horizon(config)
    tx = optim.make_optimizer(config.optim, decay_steps)
    schedule = optim.make_schedule(config.optim, decay_steps)
    graphdef, abstract, shardings, tokenizer = abstract_state(config, tx, mesh, rules)
    pretrained = str(config.get("init_from") or "")
    # With a pretrained start, checkpoints omit the frozen pretrained weights (re-imported
    # from `init_from` on restore; see vision_banana.init_from).
    ckpt = checkpoint.Checkpointer(workdir, keep=config.train.keep_checkpoints,
                                   async_save=bool(config.train.async_checkpoint),
                                   init_from=pretrained)
    if is_main:
        logging.info("train state, bytes per device:\n%s",
                     init_from.memory_report(abstract, shardings))
    data = make_data_iterator(config, tokenizer)
    with sharding.activate(mesh, sharding.activation_rules(rules)):
        # A damaged newest step falls back to the previous one (one process; a job refuses
        # with the command to do it: checkpoint.Checkpointer.restore_latest).
        start, parts, data_state = ckpt.restore_latest(
            sharding.abstract_with_shardings(
                {k: v for k, v in abstract.items() if k != "step"},
                {k: v for k, v in shardings.items() if k != "step"}),
            fall_back=jax.process_count() == 1)
        if start is None:
            start = 0
            if pretrained:  # only when starting fresh: on resume the checkpoint wins
                state = init_from.fresh_state(pretrained, make_init_fn(config, tx), abstract,
                                              shardings, progress=is_main,
                                              compiler_options=model_factory.xla_options(config) or None)
            else:
                state = jax.jit(make_init_fn(config, tx), out_shardings=shardings,
                                compiler_options=model_factory.xla_options(config) or None)()
        else:
            logging.info("resuming from %s step %d", ckpt.directory, start)
            state = {"step": jax.device_put(jnp.asarray(start, jnp.int32), shardings["step"]),
                     **parts}
            data.set_state(data_state)
    if is_main:  # the run has started or resumed: now its config is the record
        run_dir.write_config(config, workdir, config_changes)
    t0 = time.perf_counter()
    step_fn = compile_train_step(config, graphdef, tx, schedule, abstract, shardings,
                                 batch_shapes(config, tokenizer), mesh, rules)
    if is_main:
        logging.info("train step compiled in %.1f s", time.perf_counter() - t0)
        writer.write_scalars(start, {"compile_s": time.perf_counter() - t0})

    hooks = evaluators.Runner(config, workdir, graphdef, tokenizer, mesh, writer)
    buffer = _MetricBuffer(list(config.tasks), ckpt.directory)
    finite = jax.jit(lambda s: optim.all_finite({"params": s["params"], "ema": s["ema"]}),
                     compiler_options=model_factory.xla_options(config) or None)
    last_good = start if start > 0 else None
    log_every, ckpt_every = int(config.train.log_every), int(config.train.checkpoint_every)
    bar = tqdm(total=total, initial=start, desc="train", disable=not is_main, unit="step")
    t_log, steps_since_log, data_wait = time.perf_counter(), 0, 0.0
    # SIGTERM / SIGINT: every process stops at the same step, after saving it (preemption.py).
    watcher, stopped_at = preemption.Watcher(sync_every=log_every), None
    try:
        watcher.install()
        for step in range(start, total):
            t_data = time.perf_counter()
            local = _contract(next(data))
            data_wait += time.perf_counter() - t_data
            with sharding.activate(mesh, sharding.activation_rules(rules)):
                batch = sharding.shard_batch(local, mesh, rules)
                state, metrics = step_fn(state, batch)
            buffer.add(step, metrics)
            done, steps_since_log = step + 1, steps_since_log + 1
            bar.update(1)
            stop = watcher.should_stop() and done < total  # every process, every step
            if done % log_every == 0 or done == total or stop:
                scalars = buffer.drain(last_good)
                elapsed = time.perf_counter() - t_log
                # Wall time per step: the step, host input and logging; saving and evaluation
                # are logged on their own (checkpoint_s, <evaluator>/seconds).
                scalars.update(step_time_s=elapsed / steps_since_log,
                               examples_per_s=gbs * steps_since_log / elapsed,
                               data_wait_s=data_wait / steps_since_log)
                writer.write_scalars(done, scalars)
                bar.set_postfix(loss=f"{scalars['loss']:.4f}")
                t_log, steps_since_log, data_wait = time.perf_counter(), 0, 0.0
            t_pause = time.perf_counter()
            if done % ckpt_every == 0 or done == total or stop:
                buffer.check(last_good)  # every step up to here must be finite to save
                if not bool(finite(state)):
                    raise TrainingDiverged(
                        f"non-finite parameters after step {done}; not saved. Last good "
                        f"checkpoint: {'none' if last_good is None else f'step {last_good}'} "
                        f"in {ckpt.directory}")
                ckpt.save(done, state, data.get_state())
                writer.write_scalars(done, {"checkpoint_s": time.perf_counter() - t_pause})
                last_good = done
            if stop:
                stopped_at = done
                logging.info("stopping at step %d (%s); checkpoint saved in %s", done,
                             watcher.reason, ckpt.directory)
                break
            hooks.maybe_run(done, state, final=done == total)
            t_log += time.perf_counter() - t_pause  # step_time_s excludes saving and evals
        ckpt.wait()
    finally:
        watcher.uninstall()
        bar.close()
        ckpt.close()
        writer.close()
        if hasattr(data, "close"):
            data.close()
    if stopped_at is not None:
        raise preemption.Preempted(stopped_at, watcher.reason)
    return state


# ---------------------------------------------------------------------------------- CLI


def main(argv):
    del argv
    from absl import flags

    from launch import distributed

    # Before any other JAX call: joins the job when launched on a pod, a SLURM or GKE cluster,
    # or by `python -m launch.local`; a no-op for a plain single-process run.
    distributed.initialize()
    failures.divert_background_errors(flags.FLAGS.workdir)
    try:
        train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)
    except preemption.Preempted as stop:
        # The checkpoint is complete (saves finish before train_and_evaluate returns or
        # raises); a restart resumes from it. The exit status tells schedulers what happened.
        logging.warning("%s; exiting with status %d", stop, flags.FLAGS.preempted_exit_code)
        sys.exit(flags.FLAGS.preempted_exit_code)
    except Exception as error:  # one line of cause on stderr, the traceback in the workdir
        line = failures.report(error, flags.FLAGS.workdir, "train")
        sys.stderr.write(f"vision_banana.train: error: {line}\n")
        sys.exit(1)


def _define_flags():
    from absl import flags
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", None, "Python config file (get_config)",
                                    lock_config=True)
    flags.DEFINE_string("workdir", None, "run directory (checkpoints, logs, samples)")
    flags.DEFINE_integer("preempted_exit_code", 0,
                         "exit status after a SIGTERM / SIGINT stop with a checkpoint (e.g. 75 "
                         "= EX_TEMPFAIL, for schedulers that restart only failed jobs)")
    flags.mark_flags_as_required(["config", "workdir"])


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
