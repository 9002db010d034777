"""launch.tpu_vm: exact --dry-run output, the remote shell it generates (run here in bash),
code packing, and the create/reuse/start decision against a stand-in gcloud executable."""

import json
import os
import socket
import stat
import subprocess
import sys
import tarfile
import textwrap

import pytest

from launch import tpu_vm

RUN = ["--name", "vb-pod", "--zone", "us-east5-a", "--accelerator-type", "v5p-64",
       "--version", "v2-alpha-tpuv5", "--project", "my-proj", "--spot", "--repo", "/src/vb"]
TRAIN = ["python", "-m", "vision_banana.train", "--config=vision_banana/configs/base.py",
         "--workdir=gs://bkt/run 1"]


def test_run_dry_run_prints_exact_commands(capsys):
    assert tpu_vm.main([*RUN, "--dry-run", "--", *TRAIN]) == 0
    tar = tpu_vm.tarball_path("vb-pod")
    g = "gcloud compute tpus tpu-vm"
    where = "--zone=us-east5-a --project=my-proj"
    expected = textwrap.dedent(f"""\
        # TPU VM vb-pod: reuse if READY, start if STOPPED, create if absent
        {g} describe vb-pod {where} '--format=value(state,acceleratorType)'
        # create it (only if the TPU VM does not exist)
        {g} create vb-pod {where} --accelerator-type=v5p-64 --version=v2-alpha-tpuv5 --spot
        # start it (only if it is STOPPED)
        {g} start vb-pod {where}
        # pack the git tree of /src/vb (tracked + untracked, not ignored) into {tar}
        # copy it to every worker
        {g} scp {tar} vb-pod:vision_banana.tar.gz {where} --worker=all
        # unpack and install on every worker
        {g} ssh vb-pod {where} --worker=all '--command=set -euo pipefail; rm -rf vision_banana && mkdir -p vision_banana && tar -xzf vision_banana.tar.gz -C vision_banana && bash vision_banana/launch/templates/tpu_vm_install.sh vision_banana vb_venv tpu'
        # run the command on every worker, output streamed
        {g} ssh vb-pod {where} --worker=all '--command=set -o pipefail; . vb_venv/bin/activate && cd vision_banana && (python -m vision_banana.train --config=vision_banana/configs/base.py '"'"'--workdir=gs://bkt/run 1'"'"') 2>&1 | sed -u "s/^/[$(hostname)] /"'
        """)  # noqa: E501
    assert capsys.readouterr().out == expected


@pytest.mark.parametrize("action, line", [
    ("stop", "gcloud compute tpus tpu-vm stop vb-pod --zone=us-east5-a"),
    ("delete", "gcloud compute tpus tpu-vm delete vb-pod --zone=us-east5-a --quiet"),
    ("logs", "gcloud compute tpus tpu-vm ssh vb-pod --zone=us-east5-a --worker=all "
             "'--command=tail -n +1 -F vision_banana_logs/train.log | sed -u \"s/^/[$(hostname)] /\"'"),
])
def test_other_actions_dry_run(capsys, action, line):
    assert tpu_vm.main([action, "--name", "vb-pod", "--zone", "us-east5-a", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].startswith("# ") and out[1] == line


def test_skip_install_and_detach(capsys):
    assert tpu_vm.main([*RUN, "--skip-install", "--detach", "--dry-run", "--", "true"]) == 0
    out = capsys.readouterr().out
    assert "scp" not in out and "tpu_vm_install.sh" not in out
    assert "nohup bash -c" in out and "vision_banana_logs/train.log" in out


def test_cli_errors(capsys):
    with pytest.raises(SystemExit):
        tpu_vm.main(RUN)  # no command
    assert "no command given" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tpu_vm.main(["stop", "--name", "a", "--zone", "z", "--", "python"])
    with pytest.raises(SystemExit):
        tpu_vm.main([*RUN, "--env", "NOEQUALS", "--", "true"])


def _args(**kw):
    return tpu_vm.parse_args([*RUN, *sum(([f"--{k}", v] for k, v in kw.items()), []), "--", *TRAIN])


def _fake_home(tmp_path):
    home = tmp_path / "home"
    (home / "vb_venv" / "bin").mkdir(parents=True)
    (home / "vb_venv" / "bin" / "activate").write_text("export VB_ACTIVATED=yes\n")
    (home / "vision_banana").mkdir()
    return home


def test_remote_run_command_tags_lines_and_keeps_the_exit_status(tmp_path):
    home = _fake_home(tmp_path)
    args = tpu_vm.parse_args([*RUN, "--env", "GREETING=hi there", "--", "bash", "-c",
                              'echo "$GREETING $VB_ACTIVATED $(basename $PWD)"; echo oops >&2; exit 4'])
    proc = subprocess.run(["bash", "-c", tpu_vm.remote_run_command(args)], cwd=home,
                          capture_output=True, text=True, timeout=30)
    host = socket.gethostname()
    assert proc.returncode == 4
    assert proc.stdout.splitlines() == [f"[{host}] hi there yes vision_banana", f"[{host}] oops"]


def test_remote_detached_command_writes_the_log(tmp_path):
    home = _fake_home(tmp_path)
    args = tpu_vm.parse_args([*RUN, "--detach", "--", "bash", "-c", "echo ran in $(basename $PWD)"])
    proc = subprocess.run(["bash", "-c", tpu_vm.remote_run_command(args)], cwd=home,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "started on" in proc.stdout
    log = home / tpu_vm.LOG_FILE
    for _ in range(100):
        if log.exists() and log.read_text():
            break
        __import__("time").sleep(0.05)
    assert log.read_text() == "ran in vision_banana\n"


def _git_tree(tmp_path):
    repo = tmp_path / "repo"
    (repo / "launch" / "templates").mkdir(parents=True)
    (repo / "pyproject.toml").write_text("[project]\nname='x'\n")
    (repo / ".gitignore").write_text(".venv/\n*.ckpt\n")
    (repo / ".venv").mkdir()
    (repo / ".venv" / "big").write_text("not shipped")
    (repo / "model.ckpt").write_text("not shipped")
    # A stand-in installer that records its arguments (the real one needs the network).
    (repo / "launch" / "templates" / "tpu_vm_install.sh").write_text(
        'echo "$@" > installed_with.txt\n')
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    return repo


def test_pack_source_and_remote_install(tmp_path):
    repo = _git_tree(tmp_path)
    out = tmp_path / "code.tar.gz"
    info = tpu_vm.pack_source(repo, out)
    assert info["files"] == 3 and info["commit"] is None and info["dirty"] is True
    with tarfile.open(out) as tar:
        names = sorted(tar.getnames())
        source = json.load(tar.extractfile("SOURCE.json"))
    assert names == [".gitignore", "SOURCE.json", "launch/templates/tpu_vm_install.sh", "pyproject.toml"]
    assert source["files"] == 3

    home = tmp_path / "home"
    (home / "vision_banana").mkdir(parents=True)
    (home / "vision_banana" / "stale.py").write_text("from an older launch")
    os.replace(out, home / tpu_vm.REMOTE_TARBALL)
    proc = subprocess.run(["bash", "-c", tpu_vm.remote_install_command(_args())], cwd=home,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert not (home / "vision_banana" / "stale.py").exists()  # the tree is replaced, not merged
    assert (home / "vision_banana" / "pyproject.toml").exists()
    assert (home / "installed_with.txt").read_text() == "vision_banana vb_venv tpu\n"


def _fake_gcloud(tmp_path, describe: str):
    """A `gcloud` on PATH that logs its argv and answers `describe` with `describe`."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "calls.jsonl"
    script = bindir / "gcloud"
    script.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import json, sys
        with open({str(log)!r}, "a") as f:
            f.write(json.dumps(sys.argv[1:]) + "\\n")
        if sys.argv[4] == "describe":
            answer = {describe!r}
            if answer == "absent":
                sys.stderr.write("ERROR: (gcloud.compute.tpus.tpu-vm.describe) NOT_FOUND: vb-pod\\n")
                sys.exit(1)
            print(answer)
    """))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bindir, log


@pytest.mark.parametrize("describe, verbs", [
    ("absent", ["describe", "create", "ssh"]),
    ("READY\tv5p-64", ["describe", "ssh"]),
    ("STOPPED\tv5p-64", ["describe", "start", "ssh"]),
])
def test_execute_creates_reuses_or_starts(tmp_path, monkeypatch, describe, verbs):
    bindir, log = _fake_gcloud(tmp_path, describe)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    assert tpu_vm.main([*RUN, "--skip-install", "--", "true"]) == 0
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c[3] for c in calls] == verbs


@pytest.mark.parametrize("describe, message", [
    ("READY\tv4-8", "accelerator type 'v4-8', not 'v5p-64'"),
    ("PREEMPTED\tv5p-64", "state 'PREEMPTED'"),
])
def test_execute_refuses_unusable_vm(tmp_path, monkeypatch, capsys, describe, message):
    bindir, _ = _fake_gcloud(tmp_path, describe)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    assert tpu_vm.main([*RUN, "--skip-install", "--", "true"]) == 1
    assert message in capsys.readouterr().err
