#!/usr/bin/env python3
"""The default job in the page and natively, one sitting, rounds alternating (benches/README.md).

Each round: the page's WebGPU adapter in each layout (`?layout=texels|buffer`) and its CPU
reference in wasm, then the native CLI on its GPU adapter in each layout and on the CPU. Prints
one line per run: train seconds, setup, epochs/s, final loss, submissions.

Usage: web/test/speed.py [--rounds 3] [--cli target/release/gpu-train] (after web/build.sh)
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import e2e


def native(cli, device, layout):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([cli, "--device", device, "--layout", layout, "--quiet", "--summary-json",
                        f.name], check=True, stdout=subprocess.DEVNULL)
        return json.load(open(f.name))


def line(where, s):
    t = s["timings"]
    return (f"{where:<34} train {t['train_s']:7.3f} s  setup {t['setup_s']:5.2f} s  "
            f"{t['epochs_per_s']:8.1f} epochs/s  final {s['losses'][-1]:.6e}  "
            f"submissions {s.get('submits')}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cli", default=os.path.join(e2e.ROOT, "target/release/gpu-train"))
    args = ap.parse_args()
    server = e2e.serve(os.path.join(e2e.ROOT, "web/dist"))
    url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
    d = e2e.browser(e2e.WEBGPU_FLAGS)
    try:
        for r in range(args.rounds):
            print(f"round {r + 1}", flush=True)
            for layout in ["texels", "buffer"]:
                d.get(f"{url}?layout={layout}")
                e2e.call(d, "window.gpuTrain.ready", quiet=True)
                for dev in ["gpu", "cpu"] if layout == "texels" else ["gpu"]:
                    s = e2e.call(d, "window.gpuTrain.train('{}', arguments[0])"
                                    ".then(r => r.summary)", dev, quiet=True)
                    where = f"page {layout}" if dev == "gpu" else "page cpu (wasm)"
                    print(line(where, s), flush=True)
            for device, layout in [("gpu", "texels"), ("gpu", "buffer"), ("cpu", "auto")]:
                where = f"native {layout}" if device == "gpu" else "native cpu"
                print(line(where, native(args.cli, device, layout)), flush=True)
    finally:
        d.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
