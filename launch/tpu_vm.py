"""Cloud TPU VM launcher: create (or reuse) a slice, ship this tree, install, run on all workers.

    python -m launch.tpu_vm [run] --name NAME --zone ZONE --accelerator-type v5p-64 \\
        --version v2-alpha-tpuv5 [--project P] [--spot] [--detach] [--dry-run] -- \\
        python -m vision_banana.train --config=vision_banana/configs/base.py --workdir=gs://...
    python -m launch.tpu_vm logs   --name NAME --zone ZONE   # follow a --detach run
    python -m launch.tpu_vm stop   --name NAME --zone ZONE
    python -m launch.tpu_vm delete --name NAME --zone ZONE

`run` does, in order (each a `gcloud compute tpus tpu-vm ...` argv list; `--dry-run` prints
them shell-quoted instead):
1. `describe`: a READY VM of the same accelerator type is reused, a STOPPED one started, an
   absent one created (any other state is an error naming it).
2. Code shipping: the git working tree (tracked files plus untracked, not ignored ones, i.e.
   exactly what you are looking at, uncommitted edits included; no .venv, no data) is packed
   into a tarball here, with SOURCE.json naming the commit and whether the tree was dirty, and
   copied with `scp --worker=all`. Chosen over `git clone REF` on the workers because it needs
   no git credentials on the VMs and runs what you tested, not what you last pushed.
3. `ssh --worker=all`: unpack into ~/REMOTE_DIR (replaced each launch) and run
   launch/templates/tpu_vm_install.sh (a uv-made Python 3.11 venv kept in ~/VENV, `pip
   install -e .[tpu]`).
4. `ssh --worker=all`: the command, inside the venv, from ~/REMOTE_DIR; every worker's
   output streams back prefixed with its host name, and a failure on any worker fails the
   launch. `--detach` instead starts it under nohup writing ~/vision_banana_logs/train.log
   on each worker (follow with `logs`).
JAX then recognises the pod by itself (`launch.distributed.initialize()` -> method "tpu").
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import pathlib
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence

ACTIONS = ("run", "logs", "stop", "delete")
REMOTE_TARBALL = "vision_banana.tar.gz"
INSTALLER = "launch/templates/tpu_vm_install.sh"
LOG_FILE = "vision_banana_logs/train.log"
PREFIX_WITH_HOST = 'sed -u "s/^/[$(hostname)] /"'


@dataclasses.dataclass(frozen=True)
class Step:
    """One action of a plan: a gcloud argv, or the local packing (argv empty).

    `when` is "always", "absent" (the TPU VM does not exist yet) or "stopped" (it exists in
    state STOPPED); `probe` marks the describe call whose answer decides those.
    """

    comment: str
    argv: tuple[str, ...] = ()
    when: str = "always"
    probe: bool = False


def gcloud_tpu(verb: str, args, *extra: str,
               positional: Sequence[str] | None = None) -> tuple[str, ...]:
    """`gcloud compute tpus tpu-vm VERB NAME --zone=Z [--project=P] EXTRA...` as an argv.

    `positional` replaces NAME (scp takes SRC and NAME:DEST instead).
    """
    argv = ["gcloud", "compute", "tpus", "tpu-vm", verb,
            *([args.name] if positional is None else positional), f"--zone={args.zone}"]
    if args.project:
        argv.append(f"--project={args.project}")
    return tuple(argv + list(extra))


def tarball_path(name: str) -> pathlib.Path:
    return pathlib.Path(tempfile.gettempdir()) / "vision_banana-launch" / f"{name}.tar.gz"


def remote_install_command(args) -> str:
    """Shell run on every worker: unpack a fresh tree, then install it into the venv."""
    d, v = shlex.quote(args.remote_dir), shlex.quote(args.venv)
    return (f"set -euo pipefail; rm -rf {d} && mkdir -p {d} && "
            f"tar -xzf {REMOTE_TARBALL} -C {d} && "
            f"bash {d}/{INSTALLER} {d} {v} {shlex.quote(args.extra)}")


def remote_run_command(args) -> str:
    """Shell run on every worker: the train command in the venv, output tagged by host name.

    pipefail keeps the command's exit status through the `sed` tagging, so gcloud (and this
    launcher) see a failing worker fail.
    """
    env = " ".join(shlex.quote(f"{k}={v}") for k, v in args.env.items())
    command = (f"env {env} " if env else "") + shlex.join(args.command)
    # Both paths are relative to the login directory: activate before changing into the tree.
    enter = f". {shlex.quote(args.venv)}/bin/activate && cd {shlex.quote(args.remote_dir)}"
    if args.detach:
        inner = f"{enter} && exec {command}"
        return (f"mkdir -p {os.path.dirname(LOG_FILE)} && "
                f"nohup bash -c {shlex.quote(inner)} > {LOG_FILE} 2>&1 < /dev/null & "
                f'echo "started on $(hostname), log ~/{LOG_FILE}"')
    return f"set -o pipefail; {enter} && ({command}) 2>&1 | {PREFIX_WITH_HOST}"


def plan(args) -> list[Step]:
    """The steps of `args.action` (pure: nothing runs here)."""
    if args.action == "stop":
        return [Step("stop the TPU VM (disks kept; `run` starts it again)",
                     gcloud_tpu("stop", args))]
    if args.action == "delete":
        return [Step("delete the TPU VM", gcloud_tpu("delete", args, "--quiet"))]
    ssh_all = ("--worker=all",)
    if args.action == "logs":
        follow = f"tail -n +1 -F {LOG_FILE} | {PREFIX_WITH_HOST}"
        return [Step("follow the log of a --detach run on every worker",
                     gcloud_tpu("ssh", args, *ssh_all, f"--command={follow}"))]
    create = ["--accelerator-type=" + args.accelerator_type, "--version=" + args.version]
    if args.spot:
        create.append("--spot")
    steps = [
        Step(f"TPU VM {args.name}: reuse if READY, start if STOPPED, create if absent",
             gcloud_tpu("describe", args, "--format=value(state,acceleratorType)"), probe=True),
        Step("create it", gcloud_tpu("create", args, *create), when="absent"),
        Step("start it", gcloud_tpu("start", args), when="stopped"),
    ]
    if not args.skip_install:
        tar = str(tarball_path(args.name))
        steps += [
            Step(f"pack the git tree of {args.repo} (tracked + untracked, not ignored) into {tar}"),
            Step("copy it to every worker",
                 gcloud_tpu("scp", args, *ssh_all,
                            positional=[tar, f"{args.name}:{REMOTE_TARBALL}"])),
            Step("unpack and install on every worker",
                 gcloud_tpu("ssh", args, *ssh_all, "--command=" + remote_install_command(args))),
        ]
    steps.append(Step("start the command on every worker" if args.detach else
                      "run the command on every worker, output streamed",
                      gcloud_tpu("ssh", args, *ssh_all, "--command=" + remote_run_command(args))))
    return steps


def format_plan(steps: Sequence[Step]) -> str:
    """What --dry-run prints: one comment and one shell-quoted command per step."""
    lines = []
    for step in steps:
        cond = {"absent": " (only if the TPU VM does not exist)",
                "stopped": " (only if it is STOPPED)"}.get(step.when, "")
        lines.append(f"# {step.comment}{cond}")
        if step.argv:
            lines.append(shlex.join(step.argv))
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- execution


def _git(repo: pathlib.Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {repo}: {proc.stderr.strip()}")
    return proc.stdout


def pack_source(repo: str | os.PathLike, out: str | os.PathLike) -> dict:
    """Writes a .tar.gz of the git working tree of `repo` (tracked + untracked, not ignored).

    Returns (and stores as SOURCE.json in the archive) {"commit", "dirty", "files", "packed_at"};
    commit is None in a repository without commits.
    """
    repo = pathlib.Path(repo).resolve()
    names = [n for n in _git(repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
             .split("\0") if n]
    files = sorted({n for n in names if (repo / n).is_file()})  # drop deleted tracked files
    try:
        commit = _git(repo, "rev-parse", "HEAD").strip()
    except RuntimeError:
        commit = None
    info = {"commit": commit, "dirty": bool(_git(repo, "status", "--porcelain").strip()),
            "files": len(files), "packed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:gz") as tar:
        for name in files:
            tar.add(repo / name, arcname=name, recursive=False)
        blob = json.dumps(info, indent=1).encode()
        member = tarfile.TarInfo("SOURCE.json")
        member.size, member.mtime = len(blob), int(time.time())
        tar.addfile(member, io.BytesIO(blob))
    return info


def probe_state(argv: Sequence[str], accelerator_type: str) -> str:
    """Runs the describe step: 'absent', 'ready' or 'stopped'; raises on anything else."""
    proc = subprocess.run(list(argv), capture_output=True, text=True)
    if proc.returncode != 0:
        if "NOT_FOUND" in proc.stderr or "not found" in proc.stderr.lower():
            return "absent"
        raise RuntimeError(f"{shlex.join(argv)} failed: {proc.stderr.strip()}")
    state, _, existing_type = proc.stdout.strip().partition("\t")
    if existing_type.strip() and existing_type.strip() != accelerator_type:
        raise RuntimeError(f"TPU VM exists with accelerator type {existing_type.strip()!r}, "
                           f"not {accelerator_type!r}: delete it or pick another --name")
    if state == "READY":
        return "ready"
    if state == "STOPPED":
        return "stopped"
    raise RuntimeError(f"TPU VM is in state {state!r} (expected READY or STOPPED); "
                       "a PREEMPTED spot VM must be deleted and created again")


def execute(steps: Sequence[Step], args) -> int:
    state = "ready"
    for step in steps:
        if step.when != "always" and step.when != state:
            continue
        print(f"[launch.tpu_vm] {step.comment}", file=sys.stderr, flush=True)
        if step.probe:
            state = probe_state(step.argv, args.accelerator_type)
            print(f"[launch.tpu_vm] TPU VM {args.name}: {state}", file=sys.stderr, flush=True)
        elif not step.argv:
            info = pack_source(args.repo, tarball_path(args.name))
            print(f"[launch.tpu_vm] packed {info['files']} files, commit {info['commit']}"
                  f"{' + uncommitted changes' if info['dirty'] else ''}", file=sys.stderr)
        else:
            rc = subprocess.run(list(step.argv)).returncode
            if rc != 0:
                print(f"[launch.tpu_vm] failed ({describe_rc(rc)}): {shlex.join(step.argv)}",
                      file=sys.stderr)
                return rc if rc > 0 else 1
    return 0


def describe_rc(rc: int) -> str:
    return f"status {rc}" if rc >= 0 else f"signal {-rc}"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    argv = list(argv)
    action = argv.pop(0) if argv and argv[0] in ACTIONS else "run"
    cut = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(prog=f"python -m launch.tpu_vm {action}",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True, help="TPU VM name")
    parser.add_argument("--zone", required=True, help="e.g. us-east5-a")
    parser.add_argument("--project", default=None, help="GCP project (default: gcloud's)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    if action == "run":
        parser.add_argument("--accelerator-type", required=True, help="e.g. v5p-64, v6e-16")
        parser.add_argument("--version", required=True, help="TPU runtime, e.g. v2-alpha-tpuv5")
        parser.add_argument("--spot", action="store_true", help="create as a Spot VM")
        parser.add_argument("--detach", action="store_true",
                            help="start under nohup with a log file instead of streaming")
        parser.add_argument("--skip-install", action="store_true",
                            help="reuse the code and venv already on the workers")
        parser.add_argument("--remote-dir", default="vision_banana",
                            help="code dir under ~ on workers")
        parser.add_argument("--venv", default="vb_venv", help="venv dir under ~ on workers")
        parser.add_argument("--extra", default="tpu", help="pyproject extra to install")
        parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                            help="environment for the command (repeatable)")
        parser.add_argument("--repo", default=str(pathlib.Path(__file__).resolve().parents[1]),
                            help="git tree to ship (default: this checkout)")
    args = parser.parse_args(argv[:cut])
    args.action = action
    args.command = argv[cut + 1:]
    if action == "run":
        if not args.command:
            parser.error("no command given: put the train command after '--'")
        env = {}
        for item in args.env:
            key, sep, value = item.partition("=")
            if not sep or not key:
                parser.error(f"--env {item!r}: expected NAME=VALUE")
            env[key] = value
        args.env = env
    elif args.command:
        parser.error(f"'{action}' takes no command after '--'")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    steps = plan(args)
    if args.dry_run:
        sys.stdout.write(format_plan(steps))
        return 0
    try:
        return execute(steps, args)
    except RuntimeError as err:
        print(f"[launch.tpu_vm] {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
