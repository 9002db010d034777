"""vision_banana."""
