"""Cityscapes pixel-level semantic labeling scores, equal to cityscapesScripts'.

Reproduces `cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling` (v2.3.0) on the same
inputs (tests/test_parity_cityscapes.py checks every score to 1e-9):

- Confusion matrix over all 34 label ids (rows = ground truth, columns = prediction).
- Class IoU = TP / (TP + FP + FN) for the 19 evaluated classes; FP counts only pixels whose
  ground truth is an evaluated class (pixels of ignored classes are never FP). A class with no
  ground truth and no prediction gets NaN and is left out of the mean (mIoU).
- Category IoU (flat, construction, object, nature, sky, human, vehicle) sums the blocks of
  the category's evaluated labels.
- iIoU (instance-weighted IoU): every ground-truth instance's TP and FN pixels are weighted by
  avg_instance_size[class] / instance_size, so large and small objects count alike; FP as
  for IoU. It needs `*_gtFine_instanceIds.png`. The category iIoU (human, vehicle) counts a
  prediction of any label of the category as a hit, ignored caravan / trailer included, as
  the official script does.

Predictions are label ids (official format) or train ids (`pred_ids="train"`: 0..18, 255 =
void, converted with the official inverse map). Values that are no id of the chosen kind
count as "unlabeled" (label id 0): a miss for the true class and a false positive for none;
their number is reported as `pred_pixels_invalid`.

Usage (accumulate per image, then finalize; `merge` joins evaluators of several workers):

    ev = CityscapesEvaluator(pred_ids="label")
    for pred, gt, inst in images:         # uint8 / uint16 (H, W) arrays
        ev.add(pred, gt, inst)
    result = ev.result()                   # JSON-able dict
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from eval.metrics import cityscapes_labels as cl
from eval.metrics.confusion import as_uint8_labels, joint_histogram
from eval.metrics.summary import json_float, nan_mean

_N = cl.NUM_LABEL_IDS
_PRED_LUTS = {"label": cl.LABEL_TO_LABEL_LUT, "train": cl.TRAIN_TO_LABEL_LUT}
_AVG_SIZE = np.zeros(_N, np.float64)
for _name, _size in cl.AVG_INSTANCE_SIZE.items():
    _AVG_SIZE[next(lab.id for lab in cl.LABELS if lab.name == _name)] = _size
_IGNORED = np.array([cl.ID_TO_LABEL[i].ignore_in_eval for i in range(_N)])
_HAS_INSTANCE_SCORE = np.isin(np.arange(_N), cl.INSTANCE_IDS)
_INSTANCE_CATEGORIES = tuple(cl.INSTANCE_CATEGORY_IDS)  # ("human", "vehicle")
# label id -> 1 + index into _INSTANCE_CATEGORIES (0 = none), over all 256 uint8 values.
_INSTANCE_CATEGORY_LUT = np.zeros(256, np.int64)
for _k, _cat in enumerate(_INSTANCE_CATEGORIES):
    _INSTANCE_CATEGORY_LUT[cl.INSTANCE_CATEGORY_IDS[_cat]] = _k + 1


@functools.cache
def _outcome_table(pred_ids: str) -> np.ndarray:
    """uint8 (34 * 256,): index (true label id << 8 | raw prediction) -> outcome bits.

    Bit 0: the prediction (converted to a label id) is the true class; bit 1: it belongs to
    the true class's instance category (human / vehicle; 0 for other classes).
    """
    pred_label = _PRED_LUTS[pred_ids].astype(np.int64)
    true = np.arange(_N)[:, None]
    hit = pred_label[None, :] == true
    cat = _INSTANCE_CATEGORY_LUT[:_N][:, None]
    cat_hit = (_INSTANCE_CATEGORY_LUT[pred_label][None, :] == cat) & (cat > 0)
    return (hit | (cat_hit << 1)).astype(np.uint8).ravel()


@dataclasses.dataclass
class ImageStats:
    """What one image adds to the totals; computed in worker threads, summed in one place.

    hist:     int64 (34, 256) joint histogram of (gt label id, raw prediction value).
    inst:     float64 (2, 34) per label id: instance-weighted TP and FN pixels.
    cat_inst: float64 (2, 2) the same per instance category (human, vehicle).
    """

    hist: np.ndarray
    inst: np.ndarray
    cat_inst: np.ndarray


def image_stats(pred: np.ndarray, gt: np.ndarray, instances: np.ndarray | None = None,
                *, pred_ids: str = "label", name: str = "") -> ImageStats:
    """Counts one image. Pure and thread-safe (numpy and OpenCV release the GIL).

    Args:
      pred: int (H, W) predicted label ids (or train ids); uint8 is fastest.
      gt: uint8 (H, W) ground-truth label ids (`*_gtFine_labelIds.png`).
      instances: int (H, W) ground-truth instance ids (`*_gtFine_instanceIds.png`, uint16),
        or None to skip the instance score.
      pred_ids: "label" or "train", the id space of `pred`.
      name: shown in error messages (the file name).
    """
    if pred_ids not in _PRED_LUTS:
        raise ValueError(f"pred_ids must be 'label' or 'train', got {pred_ids!r}")
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    where = f" in {name}" if name else ""
    if pred.ndim != 2:
        raise ValueError(f"prediction{where} must be a single-channel (H, W) image, got shape {pred.shape}")
    if pred.shape != gt.shape:
        raise ValueError(f"prediction{where} has shape {pred.shape}, ground truth {gt.shape}")
    pred8 = as_uint8_labels(pred)
    gt8 = as_uint8_labels(gt)
    hist = joint_histogram(gt8, pred8)
    bad_rows = np.flatnonzero(hist[_N:].any(1)) + _N  # out-of-range values land in row 255
    if bad_rows.size:
        raise ValueError(f"ground truth{where} holds values that are no Cityscapes label id "
                         f"(expected 0..{_N - 1}): {bad_rows.tolist()}")
    inst = np.zeros((2, _N), np.float64)
    cat_inst = np.zeros((2, len(_INSTANCE_CATEGORIES)), np.float64)
    hist = hist[:_N].copy()  # the other rows are zero (checked above); keep per-image state small
    if instances is not None:
        _add_instance_stats(pred8, np.asarray(instances), pred_ids, inst, cat_inst, where)
    return ImageStats(hist, inst, cat_inst)


def _add_instance_stats(pred8, instances, pred_lut_name, inst, cat_inst, where) -> None:
    """Per-instance TP / FN with the official weights, vectorized over instances."""
    if instances.shape != pred8.shape:
        raise ValueError(f"instance ids{where} have shape {instances.shape}, prediction {pred8.shape}")
    # The official script takes ids > 1000 (label_id * 1000 + k); only those pixels matter,
    # a minority, so all per-pixel work after this mask runs on the compressed selection.
    sel = instances > 1000
    ids = instances[sel]
    if ids.size == 0:
        return
    max_id = int(ids.max())
    if max_id >= _N * 1000:
        raise ValueError(f"instance ids{where} name label ids >= {_N}: {np.unique(ids[ids >= _N * 1000])[:5].tolist()}")
    # Outcome per pixel from one table lookup on (true class, raw prediction): bit 0 = the
    # prediction is the class, bit 1 = it is in the class's instance category.
    outcome = _outcome_table(pred_lut_name)[(ids // 1000).astype(np.uint16) << 8 | pred8[sel]]
    # One histogram over (instance id, outcome). Ids are < 34000, so this is a small bincount
    # rather than a sort (np.unique).
    key = ids.astype(np.intp) << 2
    key |= outcome
    counts = np.bincount(key, minlength=4 * (max_id + 1)).reshape(-1, 4)
    size = counts.sum(1)
    uniq = np.flatnonzero(size)
    inst_cls = uniq // 1000
    unknown = ~_IGNORED[inst_cls] & ~_HAS_INSTANCE_SCORE[inst_cls]
    if unknown.any():
        raise ValueError(f"instance ids{where} of classes without instances: {uniq[unknown][:5].tolist()}")
    keep = ~_IGNORED[inst_cls]  # the official script skips instances of ignored classes
    uniq, inst_cls, counts, size = uniq[keep], inst_cls[keep], counts[uniq[keep]], size[uniq[keep]]
    tp = counts[:, 1] + counts[:, 3]
    cat_tp = counts[:, 2] + counts[:, 3]
    # Same float operations per instance as the official script: w = avg / size; tp * w.
    weight = _AVG_SIZE[inst_cls] / size.astype(np.float64)
    for row, values in enumerate((tp * weight, (size - tp) * weight)):
        inst[row] += np.bincount(inst_cls, weights=values, minlength=_N)
    inst_cat = _INSTANCE_CATEGORY_LUT[inst_cls] - 1
    for row, values in enumerate((cat_tp * weight, (size - cat_tp) * weight)):
        cat_inst[row] += np.bincount(inst_cat, weights=values, minlength=len(_INSTANCE_CATEGORIES))


class CityscapesEvaluator:
    """Accumulates Cityscapes scores image by image; `result()` gives the official numbers."""

    def __init__(self, pred_ids: str = "label", instance_scores: bool = True):
        if pred_ids not in _PRED_LUTS:
            raise ValueError(f"pred_ids must be 'label' or 'train', got {pred_ids!r}")
        self.pred_ids = pred_ids
        self.instance_scores = instance_scores
        self.hist = np.zeros((_N, 256), np.int64)
        self.inst = np.zeros((2, _N), np.float64)
        self.cat_inst = np.zeros((2, len(_INSTANCE_CATEGORIES)), np.float64)
        self.num_images = 0

    def add(self, pred: np.ndarray, gt: np.ndarray, instances: np.ndarray | None = None,
            name: str = "") -> None:
        """Adds one image (see `image_stats` for the arguments)."""
        if self.instance_scores and instances is None:
            raise ValueError(f"instance ids missing{' for ' + name if name else ''}: the iIoU needs "
                             "*_gtFine_instanceIds.png (or build the evaluator with instance_scores=False)")
        self.add_stats(image_stats(pred, gt, instances if self.instance_scores else None,
                                   pred_ids=self.pred_ids, name=name))

    def add_stats(self, stats: ImageStats) -> None:
        """Adds counts made by `image_stats` (e.g. in a worker thread)."""
        self.hist += stats.hist
        self.inst += stats.inst
        self.cat_inst += stats.cat_inst
        self.num_images += 1

    def merge(self, other: "CityscapesEvaluator") -> None:
        """Adds another evaluator's totals (same pred_ids and instance_scores)."""
        if (other.pred_ids, other.instance_scores) != (self.pred_ids, self.instance_scores):
            raise ValueError(f"cannot merge pred_ids={other.pred_ids!r}, instance_scores={other.instance_scores} "
                             f"into pred_ids={self.pred_ids!r}, instance_scores={self.instance_scores}")
        self.hist += other.hist
        self.inst += other.inst
        self.cat_inst += other.cat_inst
        self.num_images += other.num_images

    def confusion(self) -> np.ndarray:
        """int64 (34, 34): rows = ground-truth label id, columns = predicted label id."""
        lut = _PRED_LUTS[self.pred_ids]
        conf = np.zeros((_N, _N), np.int64)
        # Fold raw prediction values into label ids column by column (256 columns, not pixels).
        np.add.at(conf.T, lut, self.hist.T)
        return conf

    def result(self) -> dict:
        """JSON-able scores; NaN (undefined) scores are None. Means skip undefined classes."""
        conf = self.confusion()
        # FP of a column counts rows of evaluated classes only.
        eval_rows = conf[~_IGNORED]
        col_fp_base = eval_rows.sum(0)
        classes, classes_inst = {}, {}
        for label_id, name in zip(cl.EVAL_IDS, cl.EVAL_NAMES):
            tp = int(conf[label_id, label_id])
            fn = int(conf[label_id].sum()) - tp
            fp = int(col_fp_base[label_id]) - tp
            classes[name] = _ratio(tp, tp + fp + fn)
            if self.instance_scores and label_id in cl.INSTANCE_IDS:
                tpw, fnw = self.inst[0, label_id], self.inst[1, label_id]
                classes_inst[name] = _ratio(tpw, tpw + fp + fnw)
        categories, categories_inst = {}, {}
        for category in cl.CATEGORIES:
            ids = cl.category_eval_ids(category)
            if ids.size == 0:
                continue  # "void": only ignored labels
            other_rows = ~_IGNORED & ~np.isin(np.arange(_N), _category_ids_all(category))
            tp = int(conf[np.ix_(ids, ids)].sum())
            fn = int(conf[ids].sum()) - tp
            fp = int(conf[np.ix_(other_rows, ids)].sum())
            categories[category] = _ratio(tp, tp + fp + fn)
            if self.instance_scores and category in _INSTANCE_CATEGORIES:
                k = _INSTANCE_CATEGORIES.index(category)
                inst_ids = cl.INSTANCE_CATEGORY_IDS[category]
                fp_inst = int(conf[np.ix_(other_rows, inst_ids)].sum())
                tpw, fnw = self.cat_inst[0, k], self.cat_inst[1, k]
                categories_inst[category] = _ratio(tpw, tpw + fp_inst + fnw)
        values = np.arange(256)
        # Prediction values that are no id of their kind (255 is the train-id "void").
        invalid_cols = (values >= _N) if self.pred_ids == "label" else \
            ((values >= len(cl.EVAL_IDS)) & (values != 255))
        out = {
            "benchmark": "cityscapes_pixel_level_semantic_labeling",
            "protocol": "cityscapesScripts 2.3.0 evalPixelLevelSemanticLabeling",
            "num_images": self.num_images,
            "pred_ids": self.pred_ids,
            "miou": json_float(nan_mean(classes.values())),
            "category_miou": json_float(nan_mean(categories.values())),
            "classes": {k: json_float(v) for k, v in classes.items()},
            "categories": {k: json_float(v) for k, v in categories.items()},
            "pred_pixels_invalid": int(self.hist[:, invalid_cols].sum()),
            "confusion_label_ids": conf.tolist(),
        }
        if self.instance_scores:
            out["miiou"] = json_float(nan_mean(classes_inst.values()))
            out["category_miiou"] = json_float(nan_mean(categories_inst.values()))
            out["classes_iiou"] = {k: json_float(v) for k, v in classes_inst.items()}
            out["categories_iiou"] = {k: json_float(v) for k, v in categories_inst.items()}
        return out


def _category_ids_all(category: str) -> np.ndarray:
    return np.array([lab.id for lab in cl.LABELS if lab.category == category and lab.id >= 0])


def _ratio(num: float, den: float) -> float:
    return float(num) / den if den != 0 else float("nan")

