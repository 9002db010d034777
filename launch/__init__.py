"""Launching Vision Banana jobs: multi-process start-up and launchers.

- `launch.distributed.initialize()`: the one start-up call every entry point makes before
  using JAX; it recognises TPU pods, SLURM / GPU clusters, our VB_* variables and single runs.
- `python -m launch.local`: N processes on one machine (CPU collectives), for tests and demos.
- `python -m launch.tpu_vm`: create / reuse a Cloud TPU VM slice, ship the code, run on all workers.
- `python -m launch.gke`: Kubernetes manifests (JobSet for TPU slices, Indexed Job for GPUs).

Importing this package does not import JAX; see docs/launch.md for the commands.
"""
