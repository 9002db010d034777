"""Dry run of the train step for a target mesh: will this config fit, before booking a pod?

    python -m vision_banana.dry_run --config=vision_banana/configs/flux_dev.py \\
        --mesh data=2,fsdp=32 --device-memory-gb 95 [--devices 64] [--json plan.json] \\
        [--backend native]

Builds the train state abstractly (`train.abstract_state`: `eval_shape`, nothing allocated),
shards it for the mesh by the config's rules, compiles the real train step ahead of time
(`train.compile_train_step`) on that many fake CPU devices, and prints bytes per device:

  parameters, optimizer state, EMA, frozen model state, batch
      exact: from shapes, dtypes and shardings (`convert.memory.bytes_per_device`); the
      largest device is shown (a dimension that does not divide its mesh axes is replicated)
  activations / temporaries, non-aliased outputs
      from the compiled executable's `memory_analysis()`; the state is donated, so its outputs
      alias its inputs and are not counted twice
  total = arguments + temporaries + non-aliased outputs (+ generated code)

Beside the compiler's figure the dry run prints an analytic estimate (`memory_estimate`:
state + one float32 gradient + one gathered block + per-token residuals under the remat policy
+ one block's backward) and warns when the two totals differ by more than 50 %. On fake CPU
devices the temporaries are XLA:CPU's: it fuses, schedules and packs buffers differently from
the TPU / GPU compilers (it widens bfloat16 buffers to float32, has no memory-aware scheduler),
and no CPU-vs-accelerator comparison has been measured yet (docs/launch.md): read them as an
estimate and keep a margin. `--backend native` compiles for the machine's own devices instead
(TPU / GPU, the mesh must fit them) and reports that backend's memory analysis. The state rows
are exact for any backend.

`--devices N` (default: the product of the `--mesh` sizes, unnamed axes counting 1) sets
`--xla_force_host_platform_device_count=N` before JAX starts, so any mesh can be planned on a
laptop. `--mesh` overrides `config.mesh` axes by name ("data=2,fsdp=4"; unnamed axes keep the
config's value; -1 = the remaining devices). Exit status: 0 when it fits (or no
`--device-memory-gb` was given), 3 when it does not.
"""

from __future__ import annotations

# Only the standard library at module level: `--devices` must reach XLA_FLAGS before JAX is
# imported, and the config file (parsed with the flags) already imports it.
import dataclasses
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence

MESH_AXES = ("data", "fsdp", "tensor")  # = sharding.MESH_AXES (not imported: see above)
DOES_NOT_FIT = 3
_DEVICE_COUNT_FLAG = re.compile(r"--xla_force_host_platform_device_count=\S*")


@dataclasses.dataclass
class Plan:
    """Bytes per device of one train step on a mesh (see module docstring).

    `rows` maps a name (params, opt_state, ema, model_state, batch, temporaries,
    outputs_not_aliased, generated_code) to the bytes on the most loaded device; `device0`
    holds the state rows for device 0 (what a real sharded init puts there).
    """

    mesh: dict[str, int]
    num_devices: int
    global_batch_size: int
    rows: dict[str, int]
    device0: dict[str, int]
    argument_bytes: int  # memory_analysis(): inputs per device, as the compiler counts them
    total: int
    device_memory: int | None = None  # bytes available per device, if given
    backend: str = "cpu"  # the platform whose compiler measured the temporaries
    estimate: dict[str, int] = dataclasses.field(default_factory=dict)  # memory_estimate rows

    @property
    def fits(self) -> bool | None:
        return None if self.device_memory is None else self.total <= self.device_memory

    @property
    def estimate_total(self) -> int:
        return int(sum(self.estimate.values()))

    @property
    def disagrees(self) -> bool:
        """The analytic estimate and the compiler's total differ by more than 50 %."""
        from vision_banana import memory_estimate

        return bool(self.estimate) and memory_estimate.disagreement(
            self.estimate_total, self.total) > memory_estimate.WARN_RATIO

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "fits": self.fits,
                "estimate_total": self.estimate_total, "disagrees": self.disagrees}


def parse_mesh(text: str) -> dict[str, int]:
    """'data=2,fsdp=4' -> {'data': 2, 'fsdp': 4}; ValueError naming a bad item."""
    out: dict[str, int] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in MESH_AXES:
            raise ValueError(f"--mesh item {item!r}: expected AXIS=SIZE with AXIS in {MESH_AXES}")
        try:
            out[name] = int(value)
        except ValueError:
            raise ValueError(f"--mesh item {item!r}: size {value!r} is not an integer") from None
        if out[name] < 1 and out[name] != -1:
            raise ValueError(f"--mesh item {item!r}: size must be >= 1 or -1")
    return out


def device_count_for(mesh: Mapping[str, int], devices: int | None) -> int:
    """The fake device count: `devices`, else the product of the mesh sizes."""
    if devices:
        return int(devices)
    sizes = [int(mesh[a]) for a in MESH_AXES]
    if -1 in sizes:
        raise ValueError(f"mesh {dict(mesh)} has an axis of -1: pass --devices N")
    n = 1
    for s in sizes:
        n *= s
    return n


def force_cpu_devices(count: int, environ: dict | None = None) -> None:
    """Make JAX (not yet imported) start with `count` CPU devices."""
    env = os.environ if environ is None else environ
    if "jax" in sys.modules and environ is None:
        raise RuntimeError("force_cpu_devices must run before jax is imported")
    flags = _DEVICE_COUNT_FLAG.sub("", env.get("XLA_FLAGS", "")).split()
    env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={count}"])
    env["JAX_PLATFORMS"] = "cpu"


def plan(config, *, device_memory_gb: float | None = None) -> Plan:
    """Compile `config`'s train step on its mesh (all current devices) and measure it.

    Nothing of the state is allocated: the state is abstract, the step compiled ahead of
    time. Raises what `train.compile_train_step` raises when the step cannot be built.
    """
    import jax

    from vision_banana import memory_estimate, optim, sharding, train
    from vision_banana.convert.memory import bytes_per_device

    if config.train.compilation_cache_dir:
        train.use_compilation_cache(str(config.train.compilation_cache_dir))
    mesh = sharding.make_mesh(config)
    rules = sharding.rules_from_config(config)
    gbs = int(config.train.global_batch_size)
    if gbs % sharding.batch_shards(mesh, rules):
        raise ValueError(f"train.global_batch_size={gbs} is not divisible by the "
                         f"{sharding.batch_shards(mesh, rules)} batch shards of mesh "
                         f"{dict(mesh.shape)}")
    decay_steps = optim.decay_horizon(config)
    tx = optim.make_optimizer(config.optim, decay_steps)
    schedule = optim.make_schedule(config.optim, decay_steps)
    graphdef, abstract, shardings, tokenizer = train.abstract_state(config, tx, mesh, rules)
    batch = train.batch_shapes(config, tokenizer)
    compiled = train.compile_train_step(config, graphdef, tx, schedule, abstract, shardings,
                                        batch, mesh, rules)
    stats = compiled.memory_analysis()

    device0 = mesh.devices.flat[0]
    rows, first = {}, {}
    for name in ("params", "opt_state", "ema", "model_state"):
        counts = (bytes_per_device(abstract[name], shardings[name])
                  if abstract.get(name) is not None else {})
        rows[name] = max(counts.values(), default=0)
        first[name] = counts.get(device0, 0)
    batch_shardings = {k: sharding.batch_sharding(mesh, rules) for k in batch}
    rows["batch"] = max(bytes_per_device(batch, batch_shardings).values(), default=0)
    rows["temporaries"] = int(stats.temp_size_in_bytes)
    rows["outputs_not_aliased"] = max(
        0, int(stats.output_size_in_bytes) - int(stats.alias_size_in_bytes))
    rows["generated_code"] = int(stats.generated_code_size_in_bytes)
    total = (int(stats.argument_size_in_bytes) + rows["temporaries"]
             + rows["outputs_not_aliased"] + rows["generated_code"])
    mesh_sizes = {a: int(mesh.shape[a]) for a in MESH_AXES}
    analytic = memory_estimate.estimate(config, mesh_sizes, rows, batch["tokens"].shape[1])
    return Plan(mesh=mesh_sizes, num_devices=mesh.size,
                global_batch_size=gbs, rows=rows, device0=first,
                argument_bytes=int(stats.argument_size_in_bytes), total=total,
                device_memory=(None if device_memory_gb is None
                               else int(device_memory_gb * 2 ** 30)),
                backend=jax.devices()[0].platform, estimate=analytic.rows)


def human(n: float) -> str:
    """Bytes as B / KiB / MiB / GiB / TiB with 2 decimals (exact count for bytes)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{int(n)} B" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"


_LABELS = {
    "params": "parameters (trainable, f32 master)",
    "opt_state": "optimizer state",
    "ema": "EMA of the parameters",
    "model_state": "frozen model state",
    "batch": "batch (this device's slice)",
    "temporaries": "activations / temporaries",
    "outputs_not_aliased": "outputs not aliased to inputs",
    "generated_code": "generated code",
}


_ESTIMATED = ("gradients", "gathered", "residuals", "working")


def format_plan(p: Plan) -> str:
    """The byte table `main` prints (bytes per device; exact byte counts in the last column)."""
    mesh = " ".join(f"{a}={p.mesh[a]}" for a in MESH_AXES)
    lines = [f"train step on mesh {mesh} ({p.num_devices} devices), global batch "
             f"{p.global_batch_size}: bytes per device (most loaded device)"]
    width = max(len(v) for v in _LABELS.values())
    for key, label in _LABELS.items():
        lines.append(f"  {label:<{width}}  {human(p.rows[key]):>12}  {p.rows[key]:>16,d}")
    lines.append(f"  {'total':<{width}}  {human(p.total):>12}  {p.total:>16,d}")
    rows = sum(p.rows[k] for k in ("params", "opt_state", "ema", "model_state", "batch"))
    # A cross-check: the compiler's own count of the inputs (it adds the step counter).
    lines.append(f"  (inputs as the compiler counts them: {p.argument_bytes:,d} bytes = the "
                 f"five rows above + {p.argument_bytes - rows:,d})")
    if p.estimate:
        lines.append(f"analytic estimate (vision_banana.memory_estimate): "
                     f"{human(p.estimate_total)} total; temporaries "
                     f"{human(sum(p.estimate[k] for k in _ESTIMATED))} ("
                     + ", ".join(f"{k} {human(p.estimate[k])}" for k in _ESTIMATED) + ")")
        compiler = "XLA:CPU (fake devices)" if p.backend == "cpu" else f"the {p.backend} compiler"
        lines.append(f"  temporaries measured by {compiler}")
        if p.disagrees:
            lines.append(f"WARNING: the analytic estimate ({human(p.estimate_total)}) and the "
                         f"compiler's total ({human(p.total)}) differ by more than 50 %: check "
                         f"the remat policy, the sequence length and the sharding before "
                         f"trusting either")
    if p.device_memory is not None:
        verdict = "fits" if p.fits else "DOES NOT FIT"
        lines.append(f"device memory {human(p.device_memory)}: {verdict} "
                     f"({100 * p.total / p.device_memory:.1f}% used)")
    return "\n".join(lines)


def configure(config, mesh: Mapping[str, int]) -> None:
    """Apply the `--mesh` override to `config.mesh` (existing keys: a locked config allows it)."""
    for axis, size in mesh.items():
        config.mesh[axis] = int(size)
    if "num_devices" in config.mesh:
        config.mesh.num_devices = -1  # the whole fake machine is the target mesh


def main(argv: Sequence[str]) -> int:
    del argv
    from absl import flags

    f = flags.FLAGS
    config = f.config
    configure(config, parse_mesh(f.mesh))
    result = plan(config, device_memory_gb=f.device_memory_gb)
    print(format_plan(result), flush=True)
    if f.json:
        with open(f.json, "w") as out:
            json.dump(result.to_json(), out, indent=1)
    return DOES_NOT_FIT if result.fits is False else 0


def _pre_scan(argv: Sequence[str]) -> tuple[str, int | None, str]:
    """--mesh, --devices and --backend from raw argv (needed before JAX and the config are
    loaded)."""
    mesh, devices, backend = "", None, "cpu"
    for i, arg in enumerate(argv):
        for name in ("mesh", "devices", "backend"):
            value = None
            if arg.startswith(f"--{name}="):
                value = arg.split("=", 1)[1]
            elif arg == f"--{name}" and i + 1 < len(argv):
                value = argv[i + 1]
            if value is not None:
                if name == "mesh":
                    mesh = value
                elif name == "backend":
                    backend = value
                else:
                    devices = int(value)
    return mesh, devices, backend


def _define_flags() -> None:
    from absl import flags
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", None, "Python config file (get_config)",
                                    lock_config=True)
    flags.DEFINE_string("mesh", "", "mesh override, e.g. data=2,fsdp=4 (axes data/fsdp/tensor)")
    flags.DEFINE_integer("devices", None, "fake CPU devices (default: product of the mesh)")
    flags.DEFINE_float("device_memory_gb", None, "memory per device in GiB: report fit")
    flags.DEFINE_string("json", "", "also write the numbers to this JSON file")
    flags.DEFINE_enum("backend", "cpu", ["cpu", "native"],
                      "cpu: fake CPU devices (any mesh, XLA:CPU temporaries); native: this "
                      "machine's own devices (TPU / GPU), whose compiler reports the memory")
    flags.mark_flags_as_required(["config"])


def run_cli(argv: Sequence[str]) -> None:
    """Entry point: prepares the fake devices, then parses flags and runs `main`."""
    from absl import app

    # absl spells flags with underscores; accept the dashed spelling users type too.
    argv = [re.sub(r"^--device-memory-gb", "--device_memory_gb", a) for a in argv]
    mesh_text, devices, backend = _pre_scan(argv[1:])
    try:
        base_mesh = {"data": 1, "fsdp": 1, "tensor": 1}
        base_mesh.update(parse_mesh(mesh_text))
        if backend != "native":  # native: the accelerator's own devices and compiler
            force_cpu_devices(device_count_for(base_mesh, devices))
    except ValueError as err:
        sys.exit(f"dry_run: {err}")
    _define_flags()
    app.run(lambda a: sys.exit(main(a)), argv=list(argv))


if __name__ == "__main__":
    run_cli(sys.argv)
