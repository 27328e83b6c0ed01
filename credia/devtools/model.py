"""Train the model only when its inputs changed.

The model file is named after a hash of everything training reads (config, domain, data, Rasa's
version), so "is there a model for these inputs?" is a file look-up and a re-run with nothing changed
skips Rasa entirely.

Usage: ``python -m credia.devtools.model [--print-path]``.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from pathlib import Path

from credia.settings import PROJECT_ROOT

MODELS_DIR = PROJECT_ROOT / "models"
MODEL_PREFIX = "credia-"
KEEP_MODELS = 3


def training_inputs(root: Path = PROJECT_ROOT) -> list[Path]:
    """The files whose content decides the trained model, in a stable order."""
    files = [root / "config.yml", root / "domain.yml"]
    files += sorted(p for p in (root / "data").rglob("*") if p.is_file() and p.suffix in {".yml", ".yaml"})
    return files


def fingerprint(root: Path = PROJECT_ROOT) -> str:
    import rasa

    digest = hashlib.sha256(f"rasa {rasa.__version__}\n".encode())
    for path in training_inputs(root):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def model_path(root: Path = PROJECT_ROOT) -> Path:
    return MODELS_DIR / f"{MODEL_PREFIX}{fingerprint(root)}.tar.gz"


def ensure_model() -> Path:
    """Return the model for the current inputs, training it first if it does not exist."""
    target = model_path()
    if target.exists():
        print(f"Model is up to date: {target.relative_to(PROJECT_ROOT)}", file=sys.stderr)
        return target
    print("Training data or config changed: training the model (a few minutes)...", file=sys.stderr)
    command = [
        sys.executable, "-m", "rasa", "train",
        "--config", "config.yml", "--domain", "domain.yml", "--data", "data",
        "--out", str(MODELS_DIR), "--fixed-model-name", target.name.removesuffix(".tar.gz"),
    ]
    # Rasa's own output goes to stderr: stdout carries only the path (``--print-path``, read by ./assistant).
    subprocess.run(command, cwd=PROJECT_ROOT, check=True, stdout=sys.stderr)
    _prune_old_models(keep=target)
    return target


def _prune_old_models(keep: Path) -> None:
    models = sorted(MODELS_DIR.glob(f"{MODEL_PREFIX}*.tar.gz"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in [m for m in models if m != keep][KEEP_MODELS - 1:]:
        old.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--print-path", action="store_true", help="print the model path on stdout")
    args = parser.parse_args()
    path = ensure_model()
    if args.print_path:
        print(path)


if __name__ == "__main__":
    main()
