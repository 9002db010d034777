"""Our sampler (vision_banana.convert.sampling) against diffusers' FluxPipeline and
FluxKontextPipeline on the same tiny checkpoint: prompts through the tokenizers and both text
encoders, the dynamic-shift schedule, packing, ids, Euler steps and VAE decode."""

import functools

import jax
import numpy as np
import pytest
import torch_refs

from vision_banana import convert, flow

FAST = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}
H = W = 16  # VAE factor 2, 2x2 packing: 4x4 = 16 target tokens of 16 channels
STEPS = 4


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    return torch_refs.tiny_generator(tmp_path_factory)


@pytest.fixture(scope="module")
def noise():
    return np.random.default_rng(0).standard_normal((2, (H // 4) * (W // 4), 16)).astype(
        np.float32)


@functools.partial(jax.jit, static_argnames=("guidance",), compiler_options=FAST)
def _sample(gen, tokens, noise, context, guidance):
    return convert.sample(gen, tokens, noise, height=H, width=W, num_steps=STEPS,
                          guidance=guidance, context_images=context)


def test_sigmas_match_the_scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    for steps, tokens in ((4, 16), (28, 1024), (50, 4096)):
        sched = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True)
        sched.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps),
                            mu=calculate_shift(tokens))
        np.testing.assert_array_equal(convert.pipeline_sigmas(steps, tokens),
                                      sched.sigmas.numpy())
        # the same points as the trainer's schedule (up to float32 rounding)
        np.testing.assert_allclose(convert.pipeline_sigmas(steps, tokens),
                                   np.asarray(flow.schedule(steps, tokens, flow.flow_config())),
                                   atol=1e-6)
    schnell = dict(use_dynamic_shifting=False, shift=1.0)
    np.testing.assert_allclose(convert.pipeline_sigmas(4, 4096, schnell), [1, .75, .5, .25, 0])


def test_flux_pipeline_text_to_image(ref, noise):
    import torch
    from diffusers import FluxPipeline

    folder, _, gen, _ = ref
    prompts = torch_refs.PROMPTS[:2]
    pipe = FluxPipeline.from_pretrained(folder, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    want = pipe(prompt=prompts, height=H, width=W, num_inference_steps=STEPS, guidance_scale=3.5,
                latents=torch.tensor(noise), max_sequence_length=torch_refs.T5_MAX_LENGTH,
                output_type="np").images
    _, got = _sample(gen, gen.tokenizer(prompts), noise, None, 3.5)
    assert got.shape == want.shape == (2, H, W, 3)
    assert np.abs(np.asarray(got) - want).max() <= 1e-3


def test_flux_kontext_pipeline(ref, noise):
    import torch
    from diffusers import FluxKontextPipeline
    from PIL import Image

    folder, _, gen, _ = ref
    prompts = ["make the sky pink", "generate a surface normal map"]
    context = np.random.default_rng(1).integers(0, 256, (2, H, W, 3), dtype=np.uint8)
    pipe = FluxKontextPipeline.from_pretrained(folder, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    want = pipe(image=[Image.fromarray(c) for c in context], prompt=prompts, height=H, width=W,
                max_area=H * W, _auto_resize=False, num_inference_steps=STEPS,
                guidance_scale=2.5, latents=torch.tensor(noise),
                max_sequence_length=torch_refs.T5_MAX_LENGTH, output_type="np").images
    _, got = _sample(gen, gen.tokenizer(prompts), noise, context, 2.5)
    assert np.abs(np.asarray(got) - want).max() <= 1e-3
