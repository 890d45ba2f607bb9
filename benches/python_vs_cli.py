"""The Python package's overhead on the default job, and the seed's numpy and PyTorch programs in
the same process: alternating rounds, medians (benches/README.md, "The Python package").

  python3 benches/python_vs_cli.py [--device cpu|gpu|INDEX] [--rounds 7] [--bin target/release/gpu-train]

Per round, in turn:
  package         gpu_train.train(device=D, tune="never"): the default job on its seeded data
  package+arrays  the same job from numpy arrays (x, y and the weights, as --save-init writes
                  them) handed over with params=: the array handoff included
  cli             the binary with --summary-json, run as a child process
  numpy f32       the seed's numpy program in float32, in this process
  torch           the same five products in PyTorch (manual backprop, no_grad), if importable
For each: the call's wall time, and the training time the run reports (summary train_s) where it
has one. The package's overhead is wall - train_s; the CLI's wall includes starting the process.
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import tempfile
import time

import numpy as np

import gpu_train

ROOT = pathlib.Path(__file__).resolve().parents[1]
p = argparse.ArgumentParser()
p.add_argument("--device", default="cpu")
p.add_argument("--rounds", type=int, default=7)
p.add_argument("--bin", default=str(ROOT / "target" / "release" / "gpu-train"))
a = p.parse_args()

tmp = pathlib.Path(tempfile.mkdtemp())
env = {**os.environ, "XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", "/tmp")}
subprocess.run([a.bin, "--device", a.device, "--epochs", "1", "--quiet", "--tune", "never",
                "--save-init", tmp / "init"], check=True, env=env, capture_output=True)
x, y = np.load(tmp / "init" / "x.npy"), np.load(tmp / "init" / "y.npy")
w1, w2 = np.load(tmp / "init" / "w1.npy"), np.load(tmp / "init" / "w2.npy")
params = {"0.weight": w1.T, "2.weight": w2.T}

try:
    import torch
except Exception:  # not installed, or installed without what it loads
    torch = None


def package():
    t = time.perf_counter()
    r = gpu_train.train(device=a.device, tune="never")
    return time.perf_counter() - t, r.summary["timings"]["train_s"], r.final_loss


def package_arrays():
    t = time.perf_counter()
    r = gpu_train.train(x, y, params=params, batch=64, device=a.device, tune="never")
    return time.perf_counter() - t, r.summary["timings"]["train_s"], r.final_loss


def cli():
    t = time.perf_counter()
    subprocess.run([a.bin, "--device", a.device, "--quiet", "--tune", "never",
                    "--summary-json", tmp / "s.json"], check=True, env=env, capture_output=True)
    wall = time.perf_counter() - t
    s = json.loads((tmp / "s.json").read_text())
    return wall, s["timings"]["train_s"], s["final_loss"]


def numpy32():
    xx, yy, a1, a2 = (m.astype(np.float32) for m in (x, y, w1, w2))
    lr = np.float32(1e-6)
    t = time.perf_counter()
    for _ in range(500):
        h = xx.dot(a1)
        h_relu = np.maximum(h, 0)
        y_pred = h_relu.dot(a2)
        loss = np.square(y_pred - yy).sum()
        g = 2.0 * (y_pred - yy)
        g2 = h_relu.T.dot(g)
        gh = g.dot(a2.T)
        gh[h < 0] = 0
        g1 = xx.T.dot(gh)
        a1 -= lr * g1
        a2 -= lr * g2
    return time.perf_counter() - t, None, float(loss)


def torch_manual():
    xx, yy, a1, a2 = (torch.from_numpy(np.array(m, dtype=np.float32)) for m in (x, y, w1, w2))
    t = time.perf_counter()
    with torch.no_grad():
        for _ in range(500):
            h = xx.mm(a1)
            h_relu = h.clamp(min=0)
            y_pred = h_relu.mm(a2)
            diff = y_pred - yy
            loss = diff.pow(2).sum()
            g = 2.0 * diff
            g2 = h_relu.t().mm(g)
            gh = g.mm(a2.t())
            gh[h < 0] = 0
            g1 = xx.t().mm(gh)
            a1 -= 1e-6 * g1
            a2 -= 1e-6 * g2
    return time.perf_counter() - t, None, float(loss)


rows = [("package", package), ("package+arrays", package_arrays), ("cli", cli),
        ("numpy f32", numpy32)]
if torch is not None:
    rows.append((f"torch {torch.__version__}", torch_manual))
for _, f in rows:  # warm-up: the first call opens the device, the first process pages in
    f()
results = {name: [] for name, _ in rows}
for _ in range(a.rounds):
    for name, f in rows:
        results[name].append(f())

print(f"default job, device {a.device}, {a.rounds} alternating rounds, medians (min-max)")
print(f"{'what':<16} {'wall s':>22} {'train_s':>22} {'overhead s':>12}  final loss")
for name, rs in results.items():
    wall = [r[0] for r in rs]
    train = [r[1] for r in rs if r[1] is not None]
    span = lambda v: f"{statistics.median(v):.4f} ({min(v):.4f}-{max(v):.4f})"
    over = f"{statistics.median([r[0] - r[1] for r in rs]):.4f}" if train else "-"
    print(f"{name:<16} {span(wall):>22} {span(train) if train else '-':>22} {over:>12}  {rs[-1][2]:.6e}")
