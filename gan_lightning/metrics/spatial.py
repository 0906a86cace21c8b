"""Does a spatially conditioned generator obey its condition?

For real images ``x`` with maps ``c = m(x)`` (``SpatialCondition.from_images``), samples ``G(z, c)`` should
have the same map: ``condition_l1 = mean |m(G(z, c)) - c|``. ``chance_l1`` is the same distance to the map of
another image of the batch (what a generator that ignores ``c`` would score); ``ratio`` is their quotient, far
below 1 when the condition is obeyed.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gan_lightning.sampling.draw import draw


@torch.no_grad()
def condition_error(model, real: Tensor, seed: int = 0) -> dict[str, float]:
    """``real``: images ``(N, C, H, W)`` in [-1, 1], N >= 2."""
    m = model.generator.conditioning.from_images
    c = m(real.to(model.device)).cpu()
    fake_maps = m(draw(model, len(real), seed=seed, labels=c))
    err = float((fake_maps - c).abs().mean())
    chance = float((fake_maps - c.roll(1, dims=0)).abs().mean())
    return {"condition_l1": err, "chance_l1": chance, "ratio": err / chance if chance > 0 else float("nan")}
