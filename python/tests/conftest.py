"""Shared by the package's tests: where the repository's binary and fixtures are, and the devices
to run on (the CPU path always; the GPU where an adapter is found, required where
GPU_TRAIN_REQUIRE_GPU=1, as for `cargo test`)."""

import os
import pathlib
import subprocess

import numpy as np
import pytest

import gpu_train

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"


def gpu_adapter():
    """The `device=` value of the adapter `auto` picks, or None (skipped, or a failure where a
    GPU is required)."""
    picked = [d for d in gpu_train.devices() if d["auto"] and d["select"] != "cpu"]
    if picked:
        return picked[0]["select"]
    if os.environ.get("GPU_TRAIN_REQUIRE_GPU") == "1":
        pytest.fail("GPU_TRAIN_REQUIRE_GPU=1 but no GPU adapter was found")
    return None


@pytest.fixture(params=["cpu", "gpu"])
def device(request):
    """Each test with this argument runs on the CPU path and on the GPU."""
    if request.param == "cpu":
        return "cpu"
    adapter = gpu_adapter()
    if adapter is None:
        pytest.skip("no GPU adapter")
    return adapter


@pytest.fixture(scope="session")
def cli():
    """The command line's binary, built by `cargo build --release` (GPU_TRAIN_BIN overrides)."""
    path = pathlib.Path(os.environ.get("GPU_TRAIN_BIN", ROOT / "target" / "release" / "gpu-train"))
    if not path.exists():
        pytest.fail(f"{path} not found: run `cargo build --release` first (or set GPU_TRAIN_BIN)")

    def run(*args, cwd=None):
        out = subprocess.run(
            [str(path), *map(str, args)], capture_output=True, text=True, cwd=cwd,
            env={**os.environ, "XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", "/tmp")},
        )
        assert out.returncode == 0, f"gpu-train {' '.join(map(str, args))}: {out.stderr}"
        return out

    return run


def trajectory_tol(loss):
    """The library's trajectory tolerance (check::trajectory_tol): how far two correct runs'
    losses may drift apart per epoch at loss L."""
    loss = np.asarray(loss, dtype=np.float64)
    return 3e-3 * np.sqrt(loss) + 1e-5 * loss
