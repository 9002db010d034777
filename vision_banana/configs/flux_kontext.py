"""FLUX.1 Kontext [dev] shapes: the dev transformer with the input image as context tokens
(id index 1, appended after the target tokens), which is the natural fit for (image, prompt)
-> image perception tasks. Same training settings as `flux_dev`.
"""

from __future__ import annotations

import ml_collections

from vision_banana.configs import base, flux_dev


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    opts = base.parse_arg(arg, mixture="synthetic_demo", res=512, batch=64, steps=20_000)
    return flux_dev.make(opts, "flux_kontext")
