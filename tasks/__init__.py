"""Task codecs: perception targets <-> RGB images, and the prompts that ask for them.

    from tasks import depth, normals, semantic, instance, referring
    rgb = depth.encode(depth_m); d = depth.decode(rgb)

`tasks` imports nothing else of this project, so it can be used on its own.
"""

from tasks.registry import get, names

__all__ = ["get", "names"]
