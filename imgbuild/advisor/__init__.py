"""The layer-cache advisor: what in a target's Dockerfile, build args and context defeats BuildKit's cache.

* :mod:`~imgbuild.advisor.findings` — a finding (stable code, severity, file:line, cost, fix), the codes;
* :mod:`~imgbuild.advisor.ecosystems` — package managers: which commands install dependencies from which
  manifests, and where their download caches live;
* :mod:`~imgbuild.advisor.stages` — the stages a target builds and the order BuildKit runs them in;
* :mod:`~imgbuild.advisor.rules` — the Dockerfile rules (copy order, volatile build args, cache mounts);
* :mod:`~imgbuild.advisor.context` — the build-context rules (``.dockerignore``, size);
* :mod:`~imgbuild.advisor.check` — one target's findings, ignores applied; many targets' grouped.

Pure: it reads files (Dockerfiles, ``.dockerignore``, the context's sizes) and is given the history
values; it never talks to the engine.
"""
