"""Start-up of multi-process JAX: one code path for TPU pods, GPU clusters and one machine.

Every entry point calls `initialize()` before touching JAX (no `jax.devices()`, no array, no
jit before it). It reads the environment, decides which situation it is in, and acts:

  explicit  arguments passed to `initialize()` -> `jax.distributed.initialize(...)` with them
  env       VB_COORDINATOR_ADDRESS, VB_NUM_PROCESSES, VB_PROCESS_ID (set by launch.local, the
            GKE GPU manifest, any scheduler) -> same
  slurm     an `srun` step (SLURM_STEP_NODELIST) of more than one task -> same, with the
            coordinator on the first node of the step
  tpu       TPU worker variables (TPU_WORKER_HOSTNAMES, TPU_WORKER_ID, MEGASCALE_*, ...) or TPU
            chips on the PCI bus -> plain `jax.distributed.initialize()`: JAX reads the TPU
            metadata itself
  single    none of the above, or a count of one -> nothing: one process

Earlier rows win: our own variables override what SLURM says, and any field they leave unset is
taken from SLURM. The parsing (`detect`, `expand_nodelist`, ...) is pure (environment in, spec
out) so it is tested without starting JAX; `initialize()` is the only impure part.

Variables read (all optional):
  VB_COORDINATOR_ADDRESS  "host:port" of process 0's coordinator service
  VB_NUM_PROCESSES        number of processes in the job
  VB_PROCESS_ID           this process' index in [0, VB_NUM_PROCESSES)
  VB_LOCAL_DEVICE_IDS     comma-separated local device ids this process drives ("0,1")
  VB_COORDINATOR_PORT     coordinator port under SLURM (default: derived from SLURM_JOB_ID,
                          the same rule JAX uses, so every task agrees without talking)
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import re
from collections.abc import Mapping, Sequence

log = logging.getLogger(__name__)

# Set by a process that is on a TPU VM / TPU pod (GCE TPU VMs and GKE TPU node pools).
TPU_ENV_VARS = (
    "TPU_WORKER_HOSTNAMES",
    "TPU_PROCESS_ADDRESSES",
    "TPU_WORKER_ID",
    "TPU_ACCELERATOR_TYPE",
    "TPU_TOPOLOGY",
    "MEGASCALE_COORDINATOR_ADDRESS",
    "MEGASCALE_NUM_SLICES",
)
# TPU chips are PCI devices of Google's vendor id with these device ids (v3, v4, v5p, v5e, v6e,
# TPU7x; JAX's table in jax._src.hardware_utils is merged in at run time when it has newer ones).
# The device id matters: Google's virtual NIC (gVNIC, 0x0042) on GPU VMs has the same vendor.
GOOGLE_PCI_VENDOR = "0x1ae0"
TPU_PCI_DEVICE_IDS = frozenset(
    {"0x0027", "0x0056", "0x005e", "0x0062", "0x0063", "0x006f", "0x0076"})

_NODELIST_ITEM = re.compile(r"([^,\[]+)(?:\[([^\]]*)\])?([^,\[]*)")


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
    """What `detect` decided: the arguments for `jax.distributed.initialize`.

    `method` is one of "explicit", "env", "slurm", "tpu", "single". For "tpu" the fields stay
    None because JAX detects them itself from the TPU metadata. `source` says which variables
    the values came from (for the start-up log and for error messages).
    """

    method: str
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    local_device_ids: tuple[int, ...] | None = None
    source: str = ""

    @property
    def multi_process(self) -> bool:
        return self.method != "single"

    def init_kwargs(self) -> dict:
        """Keyword arguments for `jax.distributed.initialize` (empty for TPU auto-detection)."""
        if self.method == "tpu":
            return {}
        return {
            "coordinator_address": self.coordinator_address,
            "num_processes": self.num_processes,
            "process_id": self.process_id,
            "local_device_ids": (None if self.local_device_ids is None
                                 else list(self.local_device_ids)),
            # Everything is decided here: JAX's own SLURM detection would otherwise pin each
            # process to device SLURM_LOCALID even with one task per node (1 of 8 GPUs used).
            "cluster_detection_method": "deactivate",
        }


@dataclasses.dataclass(frozen=True)
class DistributedInfo:
    """The process' place in the job, as JAX sees it after start-up.

    Attributes:
      method: how the job was recognised (see `ClusterSpec.method`).
      process_index / process_count: `jax.process_index()` / `jax.process_count()`.
      local_device_count / device_count: devices this process drives / devices in the job.
      platform: "cpu", "gpu" or "tpu".
      coordinator_address: "host:port" used (None for single-process and TPU auto-detection).
    """

    method: str
    process_index: int
    process_count: int
    local_device_count: int
    device_count: int
    platform: str
    coordinator_address: str | None = None

    @property
    def is_main(self) -> bool:
        """True on the process that writes logs, checkpoints metadata and reports."""
        return self.process_index == 0


# ----------------------------------------------------------------------------- parsing (pure)


def expand_nodelist(nodelist: str) -> list[str]:
    """Expands a SLURM host list: "node[01-02,07],gpu5" -> ["node01", "node02", "node07", "gpu5"].

    Zero padding is kept ("[08-10]" -> "08", "09", "10"); a suffix after the bracket is
    appended ("rack[1-2]-ib" -> "rack1-ib", "rack2-ib"). One bracket group per host name is
    supported, which is what SLURM prints for its compressed lists.

    Raises:
      ValueError: naming the list and the bad part when it cannot be parsed.
    """
    text = nodelist.strip()
    if not text:
        raise ValueError("empty SLURM node list")
    hosts: list[str] = []
    pos = 0
    while pos < len(text):
        match = _NODELIST_ITEM.match(text, pos)
        if match is None or match.end() == pos:
            raise ValueError(f"cannot parse SLURM node list {nodelist!r} at position {pos}")
        prefix, ranges, suffix = match.groups()
        if ranges is None:
            hosts.append(prefix + suffix)
        else:
            for part in ranges.split(","):
                lo, _, hi = part.partition("-")
                if not lo.isdigit() or (hi and not hi.isdigit()):
                    raise ValueError(f"bad range {part!r} in SLURM node list {nodelist!r}")
                width = len(lo)
                for k in range(int(lo), int(hi or lo) + 1):
                    hosts.append(f"{prefix}{k:0{width}d}{suffix}")
        pos = match.end()
        if pos < len(text):
            if text[pos] != ",":
                raise ValueError(f"cannot parse SLURM node list {nodelist!r} at position {pos}")
            pos += 1
    return hosts


def expand_tasks_per_node(value: str) -> list[int]:
    """Expands SLURM_TASKS_PER_NODE: "4(x2),3" -> [4, 4, 3] (one count per node, in node order)."""
    counts: list[int] = []
    for part in value.split(","):
        match = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if match is None:
            raise ValueError(f"cannot parse SLURM tasks-per-node {value!r}: bad part {part!r}")
        counts += [int(match.group(1))] * int(match.group(2) or 1)
    return counts


def _int_var(environ: Mapping[str, str], name: str) -> int | None:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r}: expected an integer") from None


def _device_ids(raw: str | Sequence[int] | int | None, name: str) -> tuple[int, ...] | None:
    if raw is None:
        return None
    if isinstance(raw, int):
        return (raw,)
    if isinstance(raw, str):
        try:
            return tuple(int(p) for p in raw.split(",") if p.strip())
        except ValueError:
            raise ValueError(
                f"{name}={raw!r}: expected comma-separated integers like '0,1'") from None
    return tuple(int(p) for p in raw)


def platforms_requested(environ: Mapping[str, str]) -> list[str]:
    """Platforms named by JAX_PLATFORMS ("cpu", "cuda,cpu", ...); empty means JAX picks."""
    return [p.strip().lower() for p in environ.get("JAX_PLATFORMS", "").split(",") if p.strip()]


def in_slurm_step(environ: Mapping[str, str]) -> bool:
    """True inside an `srun` step. A batch script itself (sbatch, no srun) is one process even
    when SLURM_NTASKS > 1: treating it as task 0 of N would wait forever for the others."""
    return bool(environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_STEP_NUM_TASKS"))


def slurm_spec(environ: Mapping[str, str]) -> ClusterSpec | None:
    """The job as SLURM describes it, or None outside a SLURM step (needs `srun`).

    The process count is SLURM_STEP_NUM_TASKS (else SLURM_NTASKS), the index SLURM_PROCID.
    The coordinator is the first host of SLURM_STEP_NODELIST (else SLURM_JOB_NODELIST) on
    VB_COORDINATOR_PORT, else on a port derived from SLURM_JOB_ID (61440 + id % 4096, JAX's
    rule). When a node runs several tasks of an accelerator job, each task drives the one
    device SLURM_LOCALID (the one-task-per-GPU layout), unless CUDA_VISIBLE_DEVICES already
    narrows the task to a single device; on CPU, or with one task per node, every local
    device is used. Other layouts set VB_LOCAL_DEVICE_IDS.
    """
    ntasks = _int_var(environ, "SLURM_STEP_NUM_TASKS") or _int_var(environ, "SLURM_NTASKS")
    procid = _int_var(environ, "SLURM_PROCID")
    nodelist = environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST")
    if not in_slurm_step(environ) or ntasks is None or procid is None or not nodelist:
        return None
    hosts = expand_nodelist(nodelist)
    port = _int_var(environ, "VB_COORDINATOR_PORT")
    if port is None:
        job_id = _int_var(environ, "SLURM_JOB_ID") or 0
        port = 61440 + job_id % 4096
    local_ids = None
    tasks_raw = environ.get("SLURM_STEP_TASKS_PER_NODE") or environ.get("SLURM_TASKS_PER_NODE")
    local_id = _int_var(environ, "SLURM_LOCALID")
    if tasks_raw and local_id is not None:
        per_node = expand_tasks_per_node(tasks_raw)
        node_id = _int_var(environ, "SLURM_NODEID") or 0
        here = per_node[node_id] if node_id < len(per_node) else per_node[-1]
        visible = [d for d in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        on_cpu = platforms_requested(environ) == ["cpu"]
        if here > 1 and not on_cpu and len(visible) != 1:
            local_ids = (local_id,)
    return ClusterSpec(
        method="slurm",
        coordinator_address=f"{hosts[0]}:{port}",
        num_processes=ntasks,
        process_id=procid,
        local_device_ids=local_ids,
        source="SLURM task count, SLURM_PROCID, " + (
            "SLURM_STEP_NODELIST" if environ.get("SLURM_STEP_NODELIST") else "SLURM_JOB_NODELIST"),
    )


def tpu_present(environ: Mapping[str, str], sysfs_root: str | os.PathLike = "/sys") -> bool:
    """True on a TPU VM / TPU pod worker, judged from environment and sysfs only.

    No metadata server is contacted (JAX does that later, inside `jax.distributed.initialize`).
    JAX_PLATFORMS that leaves out "tpu" (e.g. "cpu" to run tests on a TPU VM) wins.
    """
    requested = platforms_requested(environ)
    if requested and "tpu" not in requested:
        return False
    if any(environ.get(name) for name in TPU_ENV_VARS):
        return True
    device_ids = TPU_PCI_DEVICE_IDS | _jax_tpu_device_ids()
    for vendor in pathlib.Path(sysfs_root, "bus", "pci", "devices").glob("*/vendor"):
        try:
            if (vendor.read_text().strip() == GOOGLE_PCI_VENDOR
                    and (vendor.parent / "device").read_text().strip() in device_ids):
                return True
        except OSError:
            continue
    return False


def _jax_tpu_device_ids() -> frozenset[str]:
    try:
        from jax._src import hardware_utils  # private: used only to learn newer chips' ids
        return frozenset(getattr(hardware_utils, "_TPU_PCI_DEVICE_IDS", {}))
    except ImportError:
        return frozenset()


def tpu_worker_count(environ: Mapping[str, str]) -> int | None:
    """Hosts in this TPU job if the environment says (GKE sets TPU_WORKER_HOSTNAMES), else None."""
    names = environ.get("TPU_PROCESS_ADDRESSES") or environ.get("TPU_WORKER_HOSTNAMES")
    if not names:
        return None
    slices = _int_var(environ, "MEGASCALE_NUM_SLICES") or 1
    return len([n for n in names.split(",") if n.strip()]) * slices


def detect(
    environ: Mapping[str, str],
    *,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: int | Sequence[int] | None = None,
    sysfs_root: str | os.PathLike = "/sys",
) -> ClusterSpec:
    """Decides how this process joins its job (pure: reads only `environ` and `sysfs_root`).

    Args:
      environ: the environment (os.environ in production, a dict in tests).
      coordinator_address, num_processes, process_id, local_device_ids: explicit values; they
        override VB_* variables, which override SLURM.
      sysfs_root: where to look for TPU chips on the PCI bus.

    Returns:
      A ClusterSpec (see the module docstring for the decision table).

    Raises:
      ValueError: on an incomplete or inconsistent set of values, naming the variables.
    """
    given = {
        "coordinator_address": coordinator_address,
        "num_processes": num_processes,
        "process_id": process_id,
    }
    from_env = {
        "coordinator_address": environ.get("VB_COORDINATOR_ADDRESS") or None,
        "num_processes": _int_var(environ, "VB_NUM_PROCESSES"),
        "process_id": _int_var(environ, "VB_PROCESS_ID"),
    }
    device_ids = _device_ids(local_device_ids, "local_device_ids")
    if device_ids is None:
        device_ids = _device_ids(environ.get("VB_LOCAL_DEVICE_IDS") or None, "VB_LOCAL_DEVICE_IDS")
    values = {k: given[k] if given[k] is not None else from_env[k] for k in given}
    slurm = slurm_spec(environ)

    if any(v is not None for v in values.values()):
        method = "explicit" if any(v is not None for v in given.values()) else "env"
        sources = [f"{k} argument" if given[k] is not None else f"VB_{k.upper()}"
                   for k in values if values[k] is not None]
        if values["num_processes"] == 1 and values["process_id"] in (None, 0):
            return ClusterSpec("single", num_processes=1, process_id=0, source=", ".join(sources))
        if slurm is not None:  # fill what our variables leave open from SLURM
            for key in values:
                if values[key] is None:
                    values[key] = getattr(slurm, key)
                    sources.append(f"{key} from SLURM")
            if device_ids is None:
                device_ids = slurm.local_device_ids
        missing = [f"VB_{k.upper()}" for k, v in values.items() if v is None]
        if missing:
            raise ValueError(
                f"incomplete multi-process setup: {', '.join(sources)} given but "
                f"{', '.join(missing)} missing (set all of VB_COORDINATOR_ADDRESS, "
                "VB_NUM_PROCESSES, VB_PROCESS_ID, or none)")
        spec = ClusterSpec(method, values["coordinator_address"], values["num_processes"],
                           values["process_id"], device_ids, ", ".join(sources))
    elif slurm is not None and slurm.num_processes > 1:
        spec = dataclasses.replace(slurm, local_device_ids=device_ids or slurm.local_device_ids)
    elif tpu_present(environ, sysfs_root):
        workers = tpu_worker_count(environ)
        if workers == 1:
            return ClusterSpec("single", num_processes=1, process_id=0,
                               source="TPU_WORKER_HOSTNAMES (one host)")
        found = [name for name in TPU_ENV_VARS if environ.get(name)]
        return ClusterSpec("tpu", source=", ".join(found) or "Google TPU chips in sysfs")
    elif environ.get("SLURM_JOB_ID") and not in_slurm_step(environ):
        return ClusterSpec("single", num_processes=1, process_id=0,
                           source="SLURM batch script outside srun (start tasks with srun)")
    else:
        return ClusterSpec("single", num_processes=1, process_id=0,
                           source="no cluster environment found")

    if spec.num_processes < 1 or not 0 <= spec.process_id < spec.num_processes:
        raise ValueError(f"process id {spec.process_id} is outside [0, {spec.num_processes}) "
                         f"(from {spec.source})")
    if ":" not in spec.coordinator_address:
        raise ValueError(f"coordinator address {spec.coordinator_address!r} (from {spec.source}) "
                         "must be host:port")
    if spec.num_processes == 1:
        return ClusterSpec("single", num_processes=1, process_id=0, source=spec.source)
    return spec


# ----------------------------------------------------------------------------- start-up

_INFO: DistributedInfo | None = None


def _describe(method: str, coordinator_address: str | None) -> DistributedInfo:
    import jax

    return DistributedInfo(
        method=method,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        local_device_count=jax.local_device_count(),
        device_count=jax.device_count(),
        platform=jax.devices()[0].platform,
        coordinator_address=coordinator_address,
    )


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: int | Sequence[int] | None = None,
    *,
    initialization_timeout_s: int = 300,
) -> DistributedInfo:
    """Joins this process to its job (or does nothing in a single-process run); idempotent.

    Must run before any other JAX call. Arguments override the environment (see `detect`).
    On CPU, cross-process collectives use gloo, set here before JAX starts its backend.
    A second call returns the first call's DistributedInfo; if something else already
    started `jax.distributed`, that state is described and kept.

    Args:
      coordinator_address: "host:port" of process 0's coordinator.
      num_processes: processes in the job.
      process_id: this process' index in [0, num_processes).
      local_device_ids: local devices this process drives (default: all it sees).
      initialization_timeout_s: how long to wait for all processes to join (seconds).

    Returns:
      DistributedInfo, also logged at INFO: process index/count, local/global devices, platform.
    """
    global _INFO
    import jax

    if _INFO is not None:
        return _INFO
    if jax.distributed.is_initialized():
        _INFO = _describe("preexisting", None)
        _log(_INFO, "jax.distributed already started by the caller")
        return _INFO
    spec = detect(os.environ, coordinator_address=coordinator_address,
                  num_processes=num_processes, process_id=process_id,
                  local_device_ids=local_device_ids)
    _mark_join("arrived")
    if spec.multi_process:
        if spec.method != "tpu":
            # Only affects the CPU backend; without it a CPU job's cross-process collectives fail.
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        log.info("starting jax.distributed (%s: %s)", spec.method, spec.source)
        jax.distributed.initialize(**spec.init_kwargs(),
                                   initialization_timeout=initialization_timeout_s)
    _mark_join("joined")
    _INFO = _describe(spec.method, spec.coordinator_address)
    _log(_INFO, spec.source)
    return _INFO


JOIN_DIR_ENV = "VB_JOIN_DIR"  # set by launch.local: where processes report joining the job


def _mark_join(stage: str) -> None:
    """Tell launch.local this process reached `stage` ("arrived": about to join, "joined")."""
    folder = os.environ.get(JOIN_DIR_ENV)
    if folder:
        index = os.environ.get("VB_PROCESS_ID", "0")
        with open(os.path.join(folder, f"{index}.{stage}"), "w") as f:
            f.write(str(os.getpid()))


def _log(info: DistributedInfo, source: str) -> None:
    log.info(
        "process %d/%d (%s; %s), %d local of %d global %s devices, coordinator %s",
        info.process_index, info.process_count, info.method, source,
        info.local_device_count, info.device_count, info.platform,
        info.coordinator_address or "-",
    )
