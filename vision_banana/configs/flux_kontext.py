"""FLUX.1 Kontext [dev] instruction-tuned from its public weights (full or LoRA).

    python -m vision_banana.train --workdir=runs/kontext \
        --config=vision_banana/configs/flux_kontext.py:ckpt=/ckpt/FLUX.1-Kontext-dev,lora=16

Kontext is the dev transformer trained with the input image given in context: its latent
tokens appended after the target tokens with id index 1 (`model.context_mode = "sequence"`),
the natural fit for (image, prompt) -> image perception tasks. Options and training settings
as `flux_dev` (ckpt, lora, lora_alpha, mixture, res, batch, steps, dtype, remat, t5_len).
"""

from __future__ import annotations

import ml_collections

from vision_banana.configs import flux_dev


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return flux_dev.make(arg, "kontext")
