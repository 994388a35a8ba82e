"""BuildKit layer caches from cache policies: a fresh CI runner starts with the dependency layers
(``COPY package.json`` + ``RUN npm install``) that an earlier build of the same scope exported.

* :mod:`~imgbuild.layercache.scope` — which scopes a target reads and writes (branch, fallbacks, the
  ``invalidate_every`` period);
* :mod:`~imgbuild.layercache.args` — the ``--cache-from``/``--cache-to`` values per backend and driver
  (pure), and the buildx driver of a builder;
* :mod:`~imgbuild.layercache.s3sync` — S3 layer caches on drivers without BuildKit's S3 backend (the
  ``docker`` driver): local cache directories pulled from and pushed to the bucket. Imported on
  demand: it loads boto3.
"""

from __future__ import annotations

from imgbuild.layercache.args import (NATIVE_S3_DRIVERS, cache_args, cache_name, detect_driver, local_dir_for,
                                      needs_sync, scope_dir, target_name)
from imgbuild.layercache.scope import LayerScope, invalidation_period, layer_scope

__all__ = [
    "NATIVE_S3_DRIVERS",
    "LayerScope",
    "cache_args",
    "cache_name",
    "detect_driver",
    "invalidation_period",
    "layer_scope",
    "local_dir_for",
    "needs_sync",
    "scope_dir",
    "target_name",
]
