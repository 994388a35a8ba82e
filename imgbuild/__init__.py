"""imgbuild: a declarative build tool for container images in monorepos."""

__version__ = "0.1.0"
