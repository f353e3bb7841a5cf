"""What produced a result: code version, package versions, device."""
from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import torch

from .version import __version__

PACKAGES = ("torch", "torchvision", "torchattacks", "pyautoattack", "robustbench",
            "numpy", "pandas", "safetensors", "foolbox", "imagecorruptions")  # fmn/ddn; corruptions


@lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus git commit (and '+dirty') when run from a checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "robustmix"],
                               cwd=root, capture_output=True, text=True, timeout=5).stdout.strip()
        return f"{__version__}+g{sha}{'.dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return __version__


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def device_description(device) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


def stable_hash(obj) -> str:
    """sha256 of a JSON-able object with sorted keys: a config's identity."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()
