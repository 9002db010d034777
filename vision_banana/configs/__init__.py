"""vision_banana/configs."""
