"""Drawing samples: seeded noise and labels (``draw``), D-guided refinement of the noise (``refinement``), and
pixel conversions and image files (``pixels``, ``draw.save_grid``/``save_pngs``).

Class path for YAMLs: ``gan_lightning.sampling.LatentRefinement``.
"""

from gan_lightning.sampling.refinement import LatentRefinement

__all__ = ["LatentRefinement"]
