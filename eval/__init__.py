"""Evaluation: metrics equal to the official tools, and one runnable module per benchmark.

    python -m eval.cityscapes      Cityscapes val, 19 classes (mIoU, category IoU, iIoU)
    python -m eval.depth           metric depth: NYUv2, KITTI, DIODE, ETH3D, iBims-1, ScanNet
    python -m eval.normals         surface normals: NYUv2, DIODE, ScanNet, iBims-1, Virtual KITTI 2
    python -m eval.refcoco         RefCOCOg (UMD) referring segmentation (cIoU, gIoU, P@t)
    python -m eval.coco_instances  COCO instance segmentation (mask AP, pycocotools)
    python -m eval.binary_masks    medical binary masks (Dice, HD95, easy / hard strata)
    python -m eval.restoration     restoration pairs (PSNR, SSIM)
    python -m eval.synthetic       synthetic scenes, held-out split (the demo's benchmark)

Each scores a checkpoint (`--workdir`: predict, decode, write a predictions folder) or any
model's predictions folder (`--predictions`, `--baseline NAME=DIR`) with the same code, and
writes results.json, report.md beside the paper's reference numbers, charts and worst-case
grids (docs/eval.md). Every module is a `runner.Benchmark` run by `runner.run` (the one
driver); shared pieces: `cli` (options), `predictions` (folder formats),
`from_checkpoint` (the predict-then-decode path), `report` (files and pictures), `references`
(published numbers with their sources), `metrics` (the scores: `metrics.for_task`, the metric
table; a leaf library the trainer and the demo import too).

`eval` never imports `vision_banana.train`; jax is imported only when a checkpoint is scored.
"""
