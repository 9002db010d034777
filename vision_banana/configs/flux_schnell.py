"""FLUX.1 [schnell] instruction-tuned from its public weights (full or LoRA).

    python -m vision_banana.train --workdir=runs/schnell \
        --config=vision_banana/configs/flux_schnell.py:ckpt=/ckpt/FLUX.1-schnell,lora=16

The timestep-distilled schnell transformer has no guidance embedding and reads 256 T5 tokens
(both from the checkpoint's config); it samples in 4 Euler steps on the unshifted schedule, and
trains on unshifted logit-normal timesteps (`flow.shift = False`), as its scheduler (shift 1, no
dynamic shifting) runs it. Options as `flux_dev` (ckpt, lora, lora_alpha, mixture, res, batch,
steps, dtype, remat, t5_len).
"""

from __future__ import annotations

import ml_collections

from vision_banana.configs import flux_dev


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return flux_dev.make(arg, "schnell")
