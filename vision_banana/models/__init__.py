"""vision_banana/models."""
