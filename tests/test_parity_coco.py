"""Our COCO segm AP equals a direct pycocotools COCOeval run on the same detections.

The test writes an instances JSON (several images and categories, polygon and RLE objects,
crowd regions) and builds detections of every kind COCOeval distinguishes: good and poor
overlaps, duplicates, false positives, detections on crowd regions, missed objects, and an
image without detections. It then compares all 12 summary numbers and per-class APs.
"""

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from eval.metrics.coco import STAT_NAMES, CocoSegmEvaluator

CATEGORIES = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 7, "name": "dog"}]


def _rle(mask):
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _box_mask(h, w, y0, x0, y1, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def _write_ground_truth(path, rng):
    images, annotations, objects = [], [], {}
    ann_id = 1
    for image_id in (11, 12, 13, 14, 15):
        h, w = 96 + 8 * (image_id % 3), 128
        images.append({"id": image_id, "height": h, "width": w, "file_name": f"{image_id:012d}.jpg"})
        objects[image_id] = []
        for k in range(int(rng.integers(2, 6))):
            y0, x0 = int(rng.integers(0, h - 20)), int(rng.integers(0, w - 20))
            y1, x1 = y0 + int(rng.integers(4, h - y0)), x0 + int(rng.integers(4, w - x0))
            mask = _box_mask(h, w, y0, x0, y1, x1)
            cat = CATEGORIES[(image_id + k) % 3]["id"]
            crowd = int(k == 0 and image_id in (12, 14))
            if crowd or k % 2:
                seg = _rle(mask)
            else:  # polygon, as most COCO objects are stored
                seg = [[x0, y0, x1, y0, x1, y1, x0, y1]]
            annotations.append({"id": ann_id, "image_id": image_id, "category_id": cat, "segmentation": seg,
                                "area": float(mask.sum()), "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": crowd})
            objects[image_id].append((mask, cat))
            ann_id += 1
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": CATEGORIES}, f)
    return objects


def _detections(objects, rng):
    """Per image: (masks (N, H, W), scores, category ids)."""
    out = {}
    for image_id, objs in objects.items():
        if image_id == 15:
            h, w = objs[0][0].shape
            out[image_id] = (np.zeros((0, h, w), bool), np.zeros(0), np.zeros(0, int))
            continue
        masks, scores, cats = [], [], []
        for k, (mask, cat) in enumerate(objs):
            if k == 1:
                continue  # missed object
            shifted = np.roll(mask, (int(rng.integers(-6, 7)), int(rng.integers(-6, 7))), axis=(0, 1))
            masks.append(shifted)
            scores.append(float(rng.uniform(0.3, 1.0)))
            cats.append(cat)
            if k == 2:  # duplicate with a lower score
                masks.append(mask)
                scores.append(0.1)
                cats.append(cat)
        h, w = objs[0][0].shape
        masks.append(_box_mask(h, w, 0, 0, 10, 10))  # false positive
        scores.append(0.95)
        cats.append(CATEGORIES[image_id % 3]["id"])
        out[image_id] = (np.stack(masks), np.array(scores), np.array(cats))
    return out


def _direct_cocoeval(gt_path, detections):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        results = [{"image_id": i, "category_id": int(c), "segmentation": _rle(m), "score": float(s)}
                   for i, (masks, scores, cats) in detections.items() for m, s, c in zip(masks, scores, cats)]
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iouType="segm")
        ev.params.imgIds = sorted(detections)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def test_ap_equals_direct_cocoeval(tmp_path):
    rng = np.random.default_rng(0)
    gt_path = tmp_path / "instances_val.json"
    objects = _write_ground_truth(gt_path, rng)
    detections = _detections(objects, rng)
    ours = CocoSegmEvaluator(gt_path)
    for image_id, (masks, scores, cats) in detections.items():
        ours.add(image_id, masks, scores, cats)
    r = ours.result()
    ev = _direct_cocoeval(gt_path, detections)
    assert r["stats"] == [float(v) for v in ev.stats]
    for name, value in zip(STAT_NAMES, ev.stats):
        assert r[name] == (None if value == -1 else float(value))
    precision = ev.eval["precision"][:, :, :, 0, -1]
    for k, cat in enumerate(CATEGORIES):
        p = precision[:, :, k]
        assert r["per_class_ap"][cat["name"]] == pytest.approx(float(p[p > -1].mean()), abs=0)
    assert 0.05 < r["AP"] < 0.95  # a non-trivial case
    assert r["num_images"] == 5 and r["num_detections"] == sum(len(d[1]) for d in detections.values())
    json.dumps(r, allow_nan=False)


def test_no_detections_and_errors(tmp_path):
    gt_path = tmp_path / "instances_val.json"
    objects = _write_ground_truth(gt_path, np.random.default_rng(1))
    ev = CocoSegmEvaluator(json.loads(gt_path.read_text()))
    h, w = objects[11][0][0].shape
    ev.add(11, np.zeros((0, h, w), bool), [], [])
    assert ev.result()["AP"] == 0.0
    with pytest.raises(KeyError, match="image id 99"):
        ev.add(99, np.zeros((0, h, w), bool), [], [])
    with pytest.raises(ValueError, match="category ids \\[5\\]"):
        ev.add(11, np.ones((1, h, w), bool), [0.5], [5])
    with pytest.raises(ValueError, match="masks are"):
        ev.add(11, np.ones((1, h + 1, w), bool), [0.5], [1])
