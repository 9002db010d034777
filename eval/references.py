"""Published reference numbers shown beside our scores in every benchmark report.

Every number comes from the Vision Banana paper ("Image Generators are Generalist Vision
Learners", Google DeepMind, arXiv 2604.20329): its own results and the counterparts it quotes.
Each `Reference` names that source and any caveat (non-zero-shot, protocol not stated), so a
reader of a report can tell a reproduced number from a quoted one.

Units follow our result keys: mIoU / cIoU / gIoU / delta1 / AbsRel as fractions (0.699, not
69.9 %), normal angular errors in degrees. Keys of `REFERENCES` are benchmark ids:

    cityscapes                     metric "miou" (19 classes, val)
    refcocog_umd_val               "ciou"
    reasonseg_val                  "giou"
    sa_co_gold                     "pmf1"
    depth/{nyuv2,ibims1,eth3d,diode,kitti,nuscenes,mean4}       "delta1", "abs_rel"
    normals/{nyuv2,diode,scannet,vkitti2,mean4}                  "mean", "median" (degrees)

`references_for(benchmark)` returns the rows of one benchmark (an empty list when the paper
gives none, e.g. COCO instances: reports then say so).
"""

from __future__ import annotations

import dataclasses

PAPER = "arXiv 2604.20329 (Vision Banana)"


@dataclasses.dataclass(frozen=True)
class Reference:
    """One published row: `model` scored `metrics` (result key -> value) per `source`."""

    model: str
    metrics: dict[str, float]
    source: str
    note: str = ""

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def _rows(source: str, rows) -> list[Reference]:
    return [Reference(model, dict(metrics), source, note) for model, metrics, note in rows]


_HEADLINE = f"{PAPER}, headline table"
_DEPTH = f"{PAPER}, depth table (metric, no alignment)"
_NORMALS = f"{PAPER}, normals table"
_NOT_ZERO_SHOT = "not zero-shot: trained on this benchmark"
_QUOTED = "quoted by the paper"
_PROTOCOL = "pooled or per-image mean not stated"

REFERENCES: dict[str, list[Reference]] = {
    "cityscapes": _rows(_HEADLINE, [
        ("Vision Banana", {"miou": 0.699}, "zero-shot"),
        ("SAM 3", {"miou": 0.652}, _QUOTED),
        ("SegMan-L", {"miou": 0.842}, _NOT_ZERO_SHOT),
        ("X-Decoder", {"miou": 0.520}, _QUOTED),
        ("OpenSeeD", {"miou": 0.478}, _QUOTED),
        ("APE-D", {"miou": 0.442}, _QUOTED),
    ]),
    "refcocog_umd_val": _rows(_HEADLINE, [
        ("Vision Banana", {"ciou": 0.738}, ""),
        ("SAM 3 Agent", {"ciou": 0.734}, _QUOTED),
    ]),
    "reasonseg_val": _rows(_HEADLINE, [
        ("Vision Banana", {"giou": 0.793}, "with Gemini 2.5 Pro"),
        ("SAM 3 Agent", {"giou": 0.770}, _QUOTED),
    ]),
    "sa_co_gold": _rows(_HEADLINE, [
        ("Vision Banana", {"pmf1": 0.540}, "500 queries"),
        ("DINO-X", {"pmf1": 0.552}, _QUOTED),
        ("SAM 3", {"pmf1": 0.661}, _NOT_ZERO_SHOT),
    ]),
    "depth/mean4": _rows(_HEADLINE, [
        ("Vision Banana", {"delta1": 0.929}, "mean over 4 datasets"),
        ("Depth Anything 3", {"delta1": 0.918}, "mean over 4 datasets; " + _QUOTED),
    ]),
    "normals/mean4": _rows(_HEADLINE, [
        ("Vision Banana", {"mean": 18.928}, "mean over 4 indoor datasets"),
        ("Lotus-2", {"mean": 19.642}, "mean over 4 indoor datasets; " + _QUOTED),
    ]),
}


def _depth(dataset: str, rows: dict[str, tuple[float, float] | None], note: str = "") -> None:
    refs = []
    for model, pair in rows.items():
        if pair is None:  # "-" in the paper's table
            continue
        delta1, abs_rel = pair
        quoted = "" if model == "Vision Banana" else _QUOTED
        refs.append(Reference(model, {"delta1": delta1, "abs_rel": abs_rel}, _DEPTH,
                              "; ".join(n for n in (note, quoted) if n)))
    REFERENCES[f"depth/{dataset}"] = refs


_depth("nyuv2", {"Vision Banana": (0.948, 0.081), "Depth Anything 3": (0.963, 0.070),
                 "MoGe-2": (0.961, 0.0733), "UniK3D": (0.965, 0.074)},
       note="ground truth assumed raw depth (rawDepths, 0 = invalid), the Marigold / Depth "
            "Anything protocol")
_depth("ibims1", {"Vision Banana": (0.934, 0.078), "Depth Anything 3": None,
                  "MoGe-2": (0.830, 0.136), "UniK3D": (0.919, 0.104)})
_depth("eth3d", {"Vision Banana": (0.935, 0.103), "Depth Anything 3": (0.917, 0.104),
                 "MoGe-2": (0.908, 0.104), "UniK3D": (0.687, 0.236)})
_depth("diode", {"Vision Banana": (0.917, 0.108), "Depth Anything 3": (0.838, 0.123),
                 "MoGe-2": (0.664, 0.175), "UniK3D": (0.713, 0.161)}, note="DIODE-Indoor")
_depth("kitti", {"Vision Banana": (0.915, 0.107), "Depth Anything 3": (0.953, 0.086),
                 "MoGe-2": (0.629, 0.181), "UniK3D": (0.812, 0.174)})
_depth("nuscenes", {"Vision Banana": (0.643, 0.219), "Depth Anything 3": None,
                    "MoGe-2": (0.820, 0.195), "UniK3D": (0.840, 0.189)})


def _normals(dataset: str, rows: dict[str, tuple[float, ...] | None], note: str = "") -> None:
    refs = []
    for model, values in rows.items():
        if values is None:
            continue
        metrics = dict(zip(("mean", "median"), values, strict=False))  # some rows give the mean only
        quoted = "" if model == "Vision Banana" else _QUOTED
        refs.append(Reference(model, metrics, _NORMALS,
                              "; ".join(n for n in (note, _PROTOCOL, quoted) if n)))
    REFERENCES[f"normals/{dataset}"] = refs


_normals("nyuv2", {"Vision Banana": (17.778, 8.876), "Lotus-2": (16.9,), "DSINE": (16.4, 8.4),
                   "Marigold": (20.864, 11.134)})
_normals("diode", {"Vision Banana": (13.818, 11.556), "Lotus-2": (18.575,),
                   "DSINE": (18.453, 13.871), "Marigold": (16.671, 12.084)}, note="DIODE-indoor")
_normals("scannet", {"Vision Banana": (15.052, 7.468), "Lotus-2": (14.2,), "DSINE": (16.2, 8.3),
                     "Marigold": (21.284, 12.268)})
_normals("vkitti2", {"Vision Banana": (29.063, 10.699), "Lotus-2": (28.894, 9.677),
                     "DSINE": (28.9, 9.9), "Marigold": None})


def references_for(benchmark: str) -> list[Reference]:
    """The published rows of `benchmark` (see the module docstring); [] when there are none."""
    return list(REFERENCES.get(benchmark, []))
