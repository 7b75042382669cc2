"""``ase-mlgen info``: versions, CUDA visibility and which optional extras import."""
from __future__ import annotations

import argparse
import importlib
import platform

# extra name -> modules it provides
EXTRAS = {
    "dft": ["gpaw"],
    "gap": ["quippy"],
    "xtb": ["tblite.ase"],
    "ga": ["ase_ga"],
    "test": ["pytest", "dscribe"],
}


def _version_of(module_name: str) -> str | None:
    try:
        module = importlib.import_module(module_name)
    except Exception:  # an extra that fails to import is reported, not fatal
        return None
    return getattr(module, "__version__", "installed")


def collect_info() -> dict:
    """Return a dict of versions, CUDA status and importable extras."""
    import torch

    from ase_mlgen._version import __version__

    info = {
        "ase_mlgen": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "ase": _version_of("ase"),
        "torch": torch.__version__,
        "e3nn": _version_of("e3nn"),
        "numpy": _version_of("numpy"),
        "cuda_available": torch.cuda.is_available(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "extras": {},
    }
    for extra, modules in EXTRAS.items():
        info["extras"][extra] = all(_version_of(m) is not None for m in modules)
    return info


def run(args: argparse.Namespace) -> int:
    info = collect_info()
    if args.json:
        import json

        print(json.dumps(info, indent=2))
        return 0
    for key in ("ase_mlgen", "python", "platform", "ase", "torch", "e3nn", "numpy"):
        print(f"{key:14s} {info[key]}")
    cuda = ", ".join(info["cuda_devices"]) if info["cuda_available"] else "not visible (CPU only)"
    print(f"{'cuda':14s} {cuda}")
    for extra, ok in info["extras"].items():
        print(f"{'extra ' + extra:14s} {'yes' if ok else 'no'}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("info", help="versions, CUDA and optional extras")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=run)
