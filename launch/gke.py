"""Kubernetes (GKE) manifests for a multi-host training job, printed as YAML or applied.

    python -m launch.gke --accelerator tpu-v5p-slice --topology 4x4x4 --nodes 16 \\
        --image IMAGE [--name vb-train] [--slices 1] [--dry-run | --out job.yaml] -- \\
        python -m vision_banana.train --config=... --workdir=gs://...
    python -m launch.gke --accelerator nvidia-h100-80gb --nodes 4 --gpus-per-node 8 \\
        --image IMAGE -- python -m vision_banana.train ...

TPU slices (accelerator `tpu-*`) become a JobSet (default; needs the JobSet controller in the
cluster) or, with `--workload job`, an Indexed Job with a headless Service. Each pod lands on
one TPU VM host (nodeSelector `cloud.google.com/gke-tpu-accelerator` / `-topology`, resource
`google.com/tpu`); GKE injects TPU_WORKER_ID / TPU_WORKER_HOSTNAMES (and MEGASCALE_* for
several slices) and `launch.distributed.initialize()` lets JAX read them, as on a TPU VM.

GPU nodes (accelerator `nvidia-*`) become an Indexed Job plus a headless Service whose DNS
name gives the coordinator: pod i gets VB_PROCESS_ID = its completion index,
VB_NUM_PROCESSES = --nodes and VB_COORDINATOR_ADDRESS = <name>-0.<name>:<port>, one process
per node driving all its GPUs (`nvidia.com/gpu`).

Any pod failure fails the whole job (backoffLimit 0; JobSet restarts all pods up to
--max-restarts times), because a multi-host JAX job cannot continue without one of its hosts;
resume comes from the latest checkpoint. Without --dry-run the manifest is written to --out
(or a temporary file) and applied with `kubectl apply -f`.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence

LABEL = "vision-banana/job"
TPU_NODE_ACCELERATOR = "cloud.google.com/gke-tpu-accelerator"
TPU_NODE_TOPOLOGY = "cloud.google.com/gke-tpu-topology"
GPU_NODE_ACCELERATOR = "cloud.google.com/gke-accelerator"
COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"

# ----------------------------------------------------------------------------- tiny YAML emitter

_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./-]*")
_YAML_WORDS = {"y", "yes", "n", "no", "true", "false", "on", "off", "null", "~"}


def _scalar(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in _YAML_WORDS:
        return text
    # A JSON string is a valid YAML double-quoted scalar (same escapes).
    return json.dumps(text)


def to_yaml(obj, indent: int = 0) -> str:
    """Block-style YAML for dicts / lists / str / int / float / bool / None (what manifests use).

    Strings that YAML could read as another type ("true", "8", "4x4x4", "a: b") are quoted,
    so `yaml.safe_load(to_yaml(x)) == x`.
    """
    pad = " " * indent
    lines: list[str] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(value, (dict, list)) and value:
                lines.append(f"{pad}{_scalar(key)}:")
                lines.append(to_yaml(value, indent + 2).rstrip("\n"))
            else:
                lines.append(f"{pad}{_scalar(key)}: {_inline(value)}")
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, (dict, list)) and item:
                body = to_yaml(item, indent + 2).rstrip("\n")
                lines.append(f"{pad}- {body[indent + 2:]}")
            else:
                lines.append(f"{pad}- {_inline(item)}")
    else:
        lines.append(pad + _scalar(obj))
    return "\n".join(lines) + "\n"


def _inline(value) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


# ----------------------------------------------------------------------------- manifests


def parse_topology(topology: str) -> tuple[int, ...]:
    """'4x4x4' -> (4, 4, 4)."""
    if not re.fullmatch(r"\d+(x\d+)+", topology or ""):
        raise ValueError(f"--topology {topology!r}: expected chips per axis like 2x2x4 or 4x4")
    return tuple(int(d) for d in topology.split("x"))


def _env_list(env: dict[str, str]) -> list[dict]:
    return [{"name": k, "value": str(v)} for k, v in env.items()]


def _container(args, resource: str, count: int, extra_env: list[dict], ports: list[dict]) -> dict:
    return {
        "name": "train",
        "image": args.image,
        "imagePullPolicy": "Always",
        "command": list(args.command),
        "env": extra_env + _env_list(args.env),
        "ports": ports,
        "resources": {"limits": {resource: count}},
    }


def _headless_service(name: str, namespace: str, selector: dict, port: int) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": {LABEL: name}},
        "spec": {
            "clusterIP": "None",
            # DNS records must exist before pods are Ready: process 0 is looked up at start-up.
            "publishNotReadyAddresses": True,
            "selector": selector,
            "ports": [{"name": "coordinator", "port": port, "targetPort": port}],
        },
    }


def _indexed_job(name: str, namespace: str, nodes: int, pod_spec: dict) -> dict:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": {LABEL: name}},
        "spec": {
            "completionMode": "Indexed",
            "completions": nodes,
            "parallelism": nodes,
            "backoffLimit": 0,
            "template": {"metadata": {"labels": {LABEL: name}}, "spec": pod_spec},
        },
    }


def tpu_manifests(args) -> list[dict]:
    """JobSet (or Indexed Job + headless Service) for `args.slices` TPU slices."""
    chips = math.prod(parse_topology(args.topology))
    if chips != args.nodes * args.chips_per_node:
        raise ValueError(
            f"--topology {args.topology} has {chips} chips but --nodes {args.nodes} x "
            f"--chips-per-node {args.chips_per_node} = {args.nodes * args.chips_per_node}")
    pod_spec = {
        "restartPolicy": "Never",
        "nodeSelector": {TPU_NODE_ACCELERATOR: args.accelerator, TPU_NODE_TOPOLOGY: args.topology},
        "containers": [_container(args, "google.com/tpu", args.chips_per_node, [],
                                  [{"containerPort": 8471, "name": "tpu-ici"},
                                   {"containerPort": 8080, "name": "megascale"}])],
    }
    if args.workload == "job":
        if args.slices != 1:
            raise ValueError("--slices > 1 needs --workload jobset (one Job per slice)")
        # GKE injects TPU_WORKER_* only into Indexed Jobs that have a subdomain.
        pod_spec = {"subdomain": args.name, **pod_spec}
        return [_headless_service(args.name, args.namespace, {"job-name": args.name}, 8471),
                _indexed_job(args.name, args.namespace, args.nodes, pod_spec)]
    # Host networking: DCN traffic between slices bypasses the pod network (GKE's recipe).
    pod_spec = {**pod_spec, "hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet"}
    return [{
        "apiVersion": "jobset.x-k8s.io/v1alpha2",
        "kind": "JobSet",
        "metadata": {
            "name": args.name,
            "namespace": args.namespace,
            "labels": {LABEL: args.name},
            # One slice per node pool: two slices never share a pool.
            "annotations": {
                "alpha.jobset.sigs.k8s.io/exclusive-topology": "cloud.google.com/gke-nodepool"},
        },
        "spec": {
            "failurePolicy": {"maxRestarts": args.max_restarts},
            "replicatedJobs": [{
                "name": "slice",
                "replicas": args.slices,
                "template": {"spec": {
                    "completionMode": "Indexed",
                    "completions": args.nodes,
                    "parallelism": args.nodes,
                    "backoffLimit": 0,
                    "template": {"metadata": {"labels": {LABEL: args.name}}, "spec": pod_spec},
                }},
            }],
        },
    }]


def gpu_manifests(args) -> list[dict]:
    """Headless Service + Indexed Job, one pod (one JAX process) per GPU node."""
    if args.topology:
        raise ValueError(
            f"--topology {args.topology!r} is for TPU slices; GPU jobs take --nodes only")
    if args.slices != 1 or args.workload == "jobset":
        raise ValueError(
            "GPU jobs are an Indexed Job: leave --slices and --workload at their defaults")
    env = [
        {"name": "VB_PROCESS_ID", "valueFrom": {"fieldRef": {"fieldPath": COMPLETION_INDEX}}},
        {"name": "VB_NUM_PROCESSES", "value": str(args.nodes)},
        {"name": "VB_COORDINATOR_ADDRESS", "value": f"{args.name}-0.{args.name}:{args.port}"},
    ]
    container = _container(args, "nvidia.com/gpu", args.gpus_per_node, env,
                           [{"containerPort": args.port, "name": "coordinator"}])
    # NCCL uses shared memory between local ranks; the container default (64 MiB) is too small.
    container["volumeMounts"] = [{"name": "dshm", "mountPath": "/dev/shm"}]
    pod_spec = {
        "subdomain": args.name,
        "restartPolicy": "Never",
        "nodeSelector": {GPU_NODE_ACCELERATOR: args.accelerator},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "containers": [container],
        "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory"}}],
    }
    return [_headless_service(args.name, args.namespace, {"job-name": args.name}, args.port),
            _indexed_job(args.name, args.namespace, args.nodes, pod_spec)]


def manifests(args) -> list[dict]:
    """The Kubernetes objects for parsed CLI `args` (see `parse_args`)."""
    if not re.fullmatch(r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?", args.name):
        raise ValueError(f"--name {args.name!r}: expected a DNS label of at most 40 characters "
                         "(lowercase letters, digits, '-'), since pod host names extend it")
    if args.nodes < 1:
        raise ValueError(f"--nodes {args.nodes}: expected >= 1")
    if args.accelerator.startswith("tpu"):
        if args.workload is None:
            args.workload = "jobset"
        return tpu_manifests(args)
    if args.accelerator.startswith("nvidia-"):
        return gpu_manifests(args)
    raise ValueError(f"--accelerator {args.accelerator!r}: expected a GKE TPU type (tpu-v5p-slice, "
                     "tpu-v6e-slice, ...) or GPU type (nvidia-h100-80gb, ...)")


def render(objects: Sequence[dict], command: Sequence[str]) -> str:
    """Multi-document YAML with a header naming the command that produced it."""
    header = "# generated by: python -m launch.gke " + shlex.join(command) + "\n"
    return header + "".join("---\n" + to_yaml(obj) for obj in objects)


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        raise argparse.ArgumentTypeError(f"--env {text!r}: expected NAME=VALUE")
    return key, value


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    argv = list(argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(prog="python -m launch.gke",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--accelerator", required=True,
                        help="tpu-v5p-slice, tpu-v6e-slice, ..., nvidia-h100-80gb, ...")
    parser.add_argument("--topology", default=None, help="TPU slice topology, e.g. 4x4x4")
    parser.add_argument("--nodes", type=int, required=True,
                        help="hosts per slice (TPU) or GPU nodes")
    parser.add_argument("--image", required=True, help="container image holding the code")
    parser.add_argument("--name", default="vb-train", help="job name (DNS label)")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--chips-per-node", type=int, default=4,
                        help="TPU chips per host (4 on v4, v5p)")
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--slices", type=int, default=1, help="TPU slices (multislice over DCN)")
    parser.add_argument("--workload", choices=["jobset", "job"], default=None,
                        help="TPU: JobSet (default) or Indexed Job + headless Service")
    parser.add_argument("--max-restarts", type=int, default=0, help="JobSet restarts of all pods")
    parser.add_argument("--port", type=int, default=8476, help="JAX coordinator port (GPU)")
    parser.add_argument("--env", type=_key_value, action="append", default=[],
                        help="NAME=VALUE added to every pod (repeatable)")
    parser.add_argument("--out", default=None, help="write the manifest here (default: stdout)")
    parser.add_argument("--dry-run", action="store_true", help="print the manifest only")
    args = parser.parse_args(argv[:cut])
    args.command = argv[cut + 1:]
    if not args.command:
        parser.error("no train command given: put it after '--'")
    args.env = dict(args.env)
    args.argv = argv
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        text = render(manifests(args), args.argv)
    except ValueError as err:
        print(f"launch.gke: {err}", file=sys.stderr)
        return 2
    if args.dry_run and not args.out:
        sys.stdout.write(text)
        return 0
    path = args.out
    if path:
        with open(path, "w") as f:
            f.write(text)
    else:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix=f"{args.name}-",
                                         delete=False) as f:
            f.write(text)
            path = f.name
    if args.dry_run:
        print(f"# wrote {path}; would run: {shlex.join(['kubectl', 'apply', '-f', path])}")
        return 0
    print(f"# {shlex.join(['kubectl', 'apply', '-f', path])}", file=sys.stderr)
    return subprocess.run(["kubectl", "apply", "-f", path]).returncode


if __name__ == "__main__":
    sys.exit(main())
