"""`python -m bench.pipeline` (what `make bench` runs); see the package docstring."""

from __future__ import annotations

import asyncio
from pathlib import Path

from .config import scale_from_env
from .report import format_report
from .run import run


def main() -> None:
    scale = scale_from_env()
    report = asyncio.run(run(scale, Path(".bench")))
    print(format_report(report))


if __name__ == "__main__":
    main()
