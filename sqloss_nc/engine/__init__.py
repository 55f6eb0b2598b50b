"""The measurement engine: neural-collapse, margin, spectral and MSE-decomposition measures as
float64 streaming accumulators over (representation, labels) batches, for any network.

It imports numpy only (no Keras, TensorFlow or JAX), accepts anything with ``__array__`` (numpy,
JAX arrays, CPU torch tensors), and is what `sqnc run`'s tracker and `sqnc measure` both feed.
Definitions are SPEC §5, §9, §10, §12; each module says which convention it uses:

* :mod:`.nc` — :class:`NCAccumulator` (NC1–NC4, CDNV, trace ratio, the theory links), NCC
  accuracy, the class-mean Gram, the rank floor;
* :mod:`.decomposition` — the MSE decomposition of Han, Papyan & Donoho (2022);
* :mod:`.spectra` — weight spectra, update norms, class-mean/weight alignment (both definitions);
* :mod:`.measures` — margins and their statistics, ρ;
* :mod:`.collapse` — the fused two-pass protocol over many layers at once
  (:func:`measure_collapse`), the driver both clients use;
* :mod:`.threads` — how many BLAS threads the measurement's algebra runs on (threadpoolctl,
  imported when a measurement starts).

Example (features exported from another framework):

>>> import numpy as np
>>> from sqloss_nc.engine import nc_metrics
>>> rng = np.random.default_rng(0)
>>> h = rng.normal(size=(300, 16)) + np.repeat(rng.normal(size=(3, 16)) * 4, 100, axis=0)
>>> y = np.repeat(np.arange(3), 100)
>>> round(nc_metrics(h, y, num_classes=3)["nc1"], 3) < 1
True
"""

from .decomposition import DECOMPOSITION_KEYS, decomposition_accumulator, least_squares_classifier, mse_decomposition, mse_decomposition_arrays
from .measures import frobenius, margin_stats, margins, rho_values
from .nc import (
    FEATURE_COLLAPSE_KEYS,
    NC_KEYS,
    NCAccumulator,
    NCCAccuracy,
    WithinClassCovariance,
    class_mean_gram,
    compute_nc_metrics,
    feature_collapse,
    nc_metrics,
    nearest_class_mean,
    rounding_floor,
)
from .spectra import DEFAULT_RANK_TOL, SPECTRA_COLUMNS, alignment, alignment_uncentred, spectra_rows, spectrum, update_norms, weight_matrix
from .collapse import CollapsePasses, CollapseResult, measure_collapse, pool_representation  # noqa: E402  (uses the above)
