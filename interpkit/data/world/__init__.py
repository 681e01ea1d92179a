"""The concept world: seeded synthetic RGB scenes with per-pixel concept annotations.

Every image has a background *scene* (a colour gradient with a scene-specific noise texture) and
one to ``max_objects`` *objects*. Each object has a class (a shape; several classes are built from
named *parts*), a *colour* from a named palette, a second *detail colour* for its detail parts
(door, roof, eyes, wheels, ...), and a surface *texture*. Class, colours, texture, size and
position are drawn independently, so shape, part, colour and texture are independent factors.

Label schemes (all masks have the image size ``(H, W)``; 0 always means "none"):

* ``object_mask``: 0 background, ``k + 1`` for object class ``k`` (``world.object_names[k]``).
* ``part_mask``: 0 no part (background or an object without parts), ``j + 1`` for
  ``world.part_names[j]``.
* ``color_mask``: 0 background, ``c + 1`` for ``world.color_names[c]`` (the colour painted there).
* ``texture_mask``: 0 background, ``t + 1`` for ``world.texture_names[t]`` (the object's texture).
* ``scene``: image-level, ``world.scene_names[scene]``; ``labels``: class of the object with the
  largest visible area (ties: the one drawn first; objects are drawn largest first).
* ``landmarks``: ``(n_parts, 2)`` float ``(y, x)`` pixel coordinates of each part's centre; NaN
  where the part is not visible. The pixel ``(floor(y + .5), floor(x + .5))`` always belongs to that
  part. When the designed centre is hidden by another object, the visible pixel of the part closest
  to it is used; when two objects of one class show the part, the larger (visible area) object wins.

Pixel colours are exact: an object pixel with colour label ``c + 1`` has the RGB value
``world.color_table[c, 0]`` (plain) or ``world.color_table[c, 1]`` (the texture's second shade).
Left/right, front/rear are as seen in the image (a car faces the side of its front wheel).

Image ``i`` is drawn from its own generator ``numpy.random.default_rng([seed, i])`` with exact
arithmetic only (no BLAS, no transcendental functions on pixels), so it is the same bytes alone
or in a batch, on any machine.
"""

from .generator import ConceptWorld
from .sets import WorldDataset, WorldSet
from .spec import MAX_OBJECTS, MAX_SIZE, MIN_SIZE

__all__ = ["ConceptWorld", "WorldSet", "WorldDataset", "MIN_SIZE", "MAX_SIZE", "MAX_OBJECTS"]
