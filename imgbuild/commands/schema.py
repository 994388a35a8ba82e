"""``imgbuild schema [workspace|build|report]``: print a JSON Schema (for editors and CI checks)."""

from __future__ import annotations

import argparse
import json

from imgbuild.specfiles.schemas import load_schema


def main(args: argparse.Namespace) -> int:
    print(json.dumps(load_schema(args.kind), indent=2))
    return 0
