"""Generate Python code and the descriptor set from protos/ (the one pinned command).

Output goes to src/batchplane/api/ (git-ignored, never edited by hand):
messages (*_pb2.py), typed stubs (*.pyi by mypy-protobuf), gRPC stubs, and
descriptors.pb, the descriptor set Envoy's transcoder reads. The tool versions
are pinned in pyproject.toml (grpcio-tools and protobuf move together).
"""

from __future__ import annotations

import shutil
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
SRC = ROOT / "src"
OUT = SRC / "batchplane" / "api"


def _include_paths() -> list[str]:
    grpc_protos = resources.files("grpc_tools") / "_proto"
    # googleapis-common-protos installs google/api/*.proto beside its modules.
    import google.api.annotations_pb2 as annotations

    googleapis_root = Path(annotations.__file__).resolve().parent.parent.parent
    return [str(PROTOS), str(grpc_protos), str(googleapis_root)]


def main() -> int:
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    bindir = Path(sys.executable).parent
    args = ["protoc", *(f"-I{p}" for p in _include_paths())]
    args += [
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
    ]
    args += [
        f"--python_out={SRC}",
        f"--grpc_python_out={SRC}",
        f"--mypy_out={SRC}",
        f"--mypy_grpc_out={SRC}",
        "--include_imports",
        "--include_source_info",
        f"--descriptor_set_out={OUT / 'descriptors.pb'}",
        *sources,
    ]
    if protoc.main(args) != 0:
        print("protoc failed", file=sys.stderr)
        return 1
    for folder in [OUT, *(p for p in OUT.rglob("*") if p.is_dir())]:
        (folder / "__init__.py").touch()
    print(f"generated {len(sources)} protos into {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
