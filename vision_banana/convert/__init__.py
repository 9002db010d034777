"""vision_banana/convert."""
