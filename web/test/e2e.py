#!/usr/bin/env python3
"""End-to-end test of the browser page in headless Chromium (Dawn, Tint, here SwiftShader).

Serves web/dist on localhost, opens it in Debian's chromium through chromedriver with WebGPU
enabled, and checks that:
  - the page names a WebGPU adapter (none fails the test, as GPU_TRAIN_REQUIRE_GPU=1 does natively);
  - the default job trained in the page on WebGPU matches the in-page CPU reference (wasm) and the
    native CLI's CPU trajectory from the same seed, every epoch within the trajectory tolerance
    of tests/library/parity.rs (|dL| <= 3e-3*sqrt(L) + 1e-5*L);
  - the model the page offers loads in the CLI (--resume continues it);
  - verify --quick in the page passes every check, in the layout the adapter's WGSL features pick
    and again in the buffer layout under WebGPU's default limits (?layout=buffer&limits=webgpu);
  - tune in the page measures every layout, keeps the outcome in the browser's storage, and the
    page opened again trains with it (a corrupt stored tuning is ignored with the reason);
  - a sweep in the page gives each variant its own run's losses bit for bit, on WebGPU (in both
    layouts, in the same dispatches) and on the CPU, stops a diverging
    variant alone, and names the setting and the item of a bad list;
  - bench --quick in the page (its training and matmul cases, each GPU result checked against the
    CPU) passes, and its results JSON is read by `gpu-train bench compare` beside a native
    results file;
  - bad input gets a message: a malformed .npy names the file and the fault, a job past the
    WebGPU limits names the limit and the buffer, and a browser without WebGPU says so.

Usage: web/test/e2e.py [--cli target/release/gpu-train] [--out DIR]
Needs: selenium (pip), chromium and chromium-driver (apt), web/dist (web/build.sh).
"""

import argparse
import functools
import http.server
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WEBGPU_FLAGS = ["--enable-unsafe-webgpu", "--enable-features=Vulkan"]
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


def tol(loss):
    return 3e-3 * math.sqrt(loss) + 1e-5 * loss


def worst_ratio(got, want):
    if len(got) != len(want):
        return math.inf
    worst = 0.0
    for g, w in zip(got, want):
        r = abs(g - w) / tol(w)
        worst = max(worst, math.inf if math.isnan(r) else r)
    return worst


def serve(directory):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=directory)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def browser(flags):
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage"] + flags:
        options.add_argument(a)
    service = Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(service=service, options=options)
    return driver


def call(driver, expr, *args, timeout=900, quiet=False):
    """Await the promise `expr` in the page (`args` as arguments[0..]); its value, or raise. The
    page keeps the outcome and this polls for it, so that no one WebDriver request outlasts its
    HTTP timeout."""
    start = (
        "const args = arguments; window.__e2e = null;"
        "Promise.resolve().then(() => " + expr + ")"
        ".then(v => { window.__e2e = {ok: v}; },"
        "      e => { window.__e2e = {err: String(e && e.message || e)}; });"
    )
    t = time.time()
    driver.execute_script(start.replace("arguments[", "args["), *args)
    while True:
        r = driver.execute_script("return window.__e2e;")
        if r is not None:
            break
        if time.time() - t > timeout:
            raise RuntimeError(f"no answer after {timeout} s")
        time.sleep(0.25)
    if not quiet:
        print(f"     [{time.time() - t:.1f} s] {expr[:70]}", flush=True)
    if "err" in r:
        raise RuntimeError(r["err"])
    return r["ok"]


def error_of(driver, expr, *args):
    try:
        call(driver, expr, *args)
        return None
    except RuntimeError as e:
        return str(e)


def open_page(d, url):
    """Open the page at `url`; once it is ready, the adapter it shows."""
    d.get(url)
    call(d, "window.gpuTrain.ready")
    return adapter_of(d)


def adapter_of(d):
    return call(d, "Promise.resolve(window.gpuTrain.state.adapter)")


def default_job_within(d, native, what):
    """Train the default job in the page on WebGPU and then the CPU reference; check the WebGPU
    trajectory against both the in-page CPU's and the native CLI's (`native`)."""
    both = call(d, "window.gpuTrain.trainBoth('{}').then(r => ({gpu: r.gpu.summary.losses, "
                   "rate: r.gpu.summary.timings.epochs_per_s, parity: r.parity}))")
    r = worst_ratio(both["gpu"], native)
    check(both["parity"]["passed"] and r <= 1.0,
          f"the default job {what} ({both['rate']:.1f} epochs/s, final loss "
          f"{both['gpu'][-1]:.6e}): within tolerance of the in-page CPU (worst "
          f"{both['parity']['worst_ratio']:.3f}) and of the native CLI's CPU (worst {r:.3f})")


def tuned(d, url, native):
    """Tune in the page (the default job's products in every layout, its training in each): the
    outcome is kept in the browser's storage, and the page opened again takes it (the measured
    layout, the tuned variants: the default job still within tolerance); a corrupt stored tuning
    is ignored with the reason; forgetting it brings back the rule."""
    adapter = adapter_of(d)
    layouts = sorted(["texels", "buffer"] if "readonly_and_readwrite_storage_textures"
                     in adapter["wgsl_language_features"] else ["buffer"])
    t = call(d, "window.gpuTrain.tune('{}', true)")
    lines = d.find_element("id", "tune-out").text
    print("\n".join("     " + line for line in lines.splitlines()[-4:]))
    f, key = t["file"], t["key"]
    entries = f["entries"]
    # The default job's products (transposes, m, n, k padded to 4): 1000->100 forward and weight
    # gradient, 100->10 forward, input gradient and weight gradient.
    products = {(False, False, 64, 100, 1000), (True, False, 1000, 100, 64),
                (False, False, 64, 12, 100), (False, True, 64, 100, 12), (True, False, 100, 12, 64)}
    shape = lambda e: (e["trans_a"], e["trans_b"], e["m"], e["n"], e["k"])
    job = [e for e in entries if shape(e) in products]
    check(sorted({e["layout"] for e in job}) == layouts and len(job) == 5 * len(layouts),
          f"tune measured the default job's 5 products in each of {layouts}: {len(job)} entries")
    square = [e for e in entries if e["m"] == e["n"] == e["k"]]
    check(square, f"the bench's on-the-spot tunings are kept beside them: {len(square)} square "
                  f"shapes ({len(entries)} entries in all)")
    wrong = [e for e in entries if not any(m["block"] == e["block"] and m["parity"]["passed"]
                                           and m["seconds"] for m in e["measured"])]
    check(not wrong, f"every variant tune chose passed its check against the CPU ({wrong[:1]})")
    choice = f["layout"]
    if len(layouts) > 1:
        check(choice and choice["layout"] in layouts and len(choice["measured"]) == 2,
              f"tune timed the training in both layouts and chose {choice and choice['layout']}: "
              + ", ".join(f"{m['layout']} {m['seconds'] * 1e3:.2f} ms/epoch"
                          for m in (choice or {}).get("measured", [])))
    want = choice["layout"] if choice else adapter["layout"]
    for how in ["right after tuning", "opened again"]:
        a = open_page(d, url) if how == "opened again" else adapter_of(d)
        check(a["tuning"].get("shapes") == len(entries) and a["layout"] == want
              and a["layout_from"] == ("measured" if choice else "rule"),
              f"the page {how} takes the stored tuning: {a['layout']} ({a['layout_from']}), "
              f"{a['tuning']}")
    default_job_within(d, native, "tuned")
    d.execute_script("localStorage.setItem(arguments[0], '{\"format\": 1')", key)
    a = open_page(d, url)
    text = d.find_element("id", "adapter").text
    check("corrupt" in (a["tuning"].get("ignored") or "") and a["layout_from"] == "rule"
          and "ignored" in text,
          f"a corrupt stored tuning is ignored with the reason: {a['tuning']}")
    had = call(d, "window.gpuTrain.forget()")
    a = adapter_of(d)
    check(had is True and a["tuning"]["stored"] is False
          and d.execute_script("return localStorage.getItem(arguments[0])", key) is None,
          f"forget removes the stored tuning: {a['tuning']}")


def native_default_job(cli, out):
    path = os.path.join(out, "native-cpu.json")
    subprocess.run([cli, "--device", "cpu", "--quiet", "--summary-json", path], check=True,
                   stdout=subprocess.DEVNULL)
    with open(path) as f:
        return json.load(f)["losses"]


def sweep_matches_runs(d, device, what):
    """A sweep in the page (4 variants, lr x seed, of a job with mini-batches and a short last
    one, biases, Adam and a step schedule) on `device`: every variant's losses equal the page's
    own run of its values, bit for bit, and differ from one another. How the models shared the
    device is returned (`batching`)."""
    base = {"layers": [20, 16, 3], "rows": 100, "batch": 32, "bias": True,
            "optimizer": {"kind": "adam"}, "lr_schedule": {"schedule": "step:5:0.5"}, "epochs": 12}
    s = call(d, "window.gpuTrain.sweep(arguments[0], arguments[1], arguments[2]).then(r => "
                "({batching: r.batching, best: r.best, variants: r.variants.map(v => ({values: "
                "v.values, losses: v.summary.losses}))}))",
             json.dumps(base), "lr=1e-3,3e-3 seed=0,1", device)
    variants = s["variants"]
    # The model the page then offers is the variant of the lowest final loss.
    model = bytes(call(d, "Promise.resolve(window.gpuTrain.model())", quiet=True))
    n = int.from_bytes(model[:8], "little")
    config = json.loads(json.loads(model[8:8 + n])["__metadata__"]["config"])
    best = min(range(len(variants)), key=lambda k: variants[k]["losses"][-1])
    f32 = lambda v: struct.unpack("f", struct.pack("f", v))[0]
    check(s["best"] == best and (f32(config["lr"]), config["seed"]) == (
        f32(variants[best]["values"]["lr"]), variants[best]["values"]["seed"]),
          f"sweep in the page on {device}{what}: the model offered is the best variant's "
          f"({s['best']}, lr {config['lr']}, seed {config['seed']})")
    same = len(variants) == 4
    for v in variants:
        job = dict(base, lr=v["values"]["lr"], seed=v["values"]["seed"])
        run = call(d, "window.gpuTrain.train(arguments[0], arguments[1]).then(r => "
                      "r.summary.losses)", json.dumps(job), device, quiet=True)
        same = same and run == v["losses"] and len(run) == 12
    distinct = len({json.dumps(v["losses"]) for v in variants}) == 4
    check(same and distinct, f"sweep in the page on {device}{what}: each of 4 variants (lr x seed) "
                             f"is its own run, bit for bit ({s['batching']})")
    return s["batching"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", default=os.path.join(ROOT, "target/release/gpu-train"))
    ap.add_argument("--dist", default=os.path.join(ROOT, "web/dist"))
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="gpu-train-e2e.")
    os.makedirs(out, exist_ok=True)
    server = serve(args.dist)
    url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
    start = time.time()

    d = browser(WEBGPU_FLAGS)
    try:
        adapter = open_page(d, url)
        print(f"     adapter: {json.dumps(adapter)}")
        check(adapter.get("ok") is True,
              f"the page opened a WebGPU adapter ({adapter.get('name') or adapter.get('error')})")
        if not adapter.get("ok"):
            return 1
        chosen = "texels" if "readonly_and_readwrite_storage_textures" in adapter[
            "wgsl_language_features"] and adapter["device_type"] == "Cpu" else "buffer"
        check(adapter["layout"] == chosen and adapter["layout_from"] == "rule"
              and adapter["tuning"]["stored"] is False,
              f"untuned, the layout {adapter['layout']} follows the WGSL language features "
              f"({chosen}; {adapter['layout_from']}, {adapter['tuning']})")

        # The default job on WebGPU, then on the CPU reference in wasm, as the page's button does.
        both = call(d, "window.gpuTrain.trainBoth('{}').then(r => ({gpu: r.gpu.summary, "
                       "cpu: r.cpu.summary, parity: r.parity}))")
        gpu, cpu = both["gpu"]["losses"], both["cpu"]["losses"]
        check(len(gpu) == 500 and len(cpu) == 500, "500 epochs on WebGPU and on the CPU in wasm")
        print(f"     WebGPU: final loss {gpu[-1]:.6e}, {both['gpu']['timings']['epochs_per_s']:.1f} "
              f"epochs/s, {both['gpu']['submits']} submissions; CPU (wasm): final loss "
              f"{cpu[-1]:.6e}, {both['cpu']['timings']['epochs_per_s']:.1f} epochs/s")
        check(both["parity"]["passed"],
              f"the page's parity: WebGPU within the trajectory tolerance of the in-page CPU "
              f"(worst {both['parity']['worst_ratio']:.3f} of it, relative "
              f"{both['parity']['worst_relative']:.2e})")
        check(worst_ratio(gpu, cpu) <= 1.0, "recomputed here: WebGPU vs in-page CPU within tolerance")
        native = native_default_job(args.cli, out)
        r = worst_ratio(gpu, native)
        check(r <= 1.0, f"WebGPU vs the native CLI's CPU trajectory (same seed): worst {r:.3f} of "
                        f"the tolerance")
        r = worst_ratio(cpu, native)
        check(r <= 1.0, f"in-page CPU (wasm) vs the native CLI's CPU: worst {r:.3f} of the tolerance")
        with open(os.path.join(out, "page-summary.json"), "w") as f:
            json.dump(both, f)

        # The page's layout: the job selector (long descriptions) within the page's width, the
        # chart's legend clear of its axis labels (drawn at the top right, the labels at the left).
        fits = call(d, "(() => { const w = document.documentElement.clientWidth;"
                       " const s = document.getElementById('preset').getBoundingClientRect();"
                       " return {right: s.right, width: w,"
                       " scroll: document.documentElement.scrollWidth}; })()")
        check(fits["right"] <= fits["width"] and fits["scroll"] <= fits["width"],
              f"the job selector fits the page's width ({fits})")

        # The model the page offers, resumed by the CLI for one more epoch.
        model = bytes(call(d, "Promise.resolve(window.gpuTrain.model())"))
        model_path = os.path.join(out, "page-model.safetensors")
        with open(model_path, "wb") as f:
            f.write(model)
        resumed = subprocess.run([args.cli, "--device", "cpu", "--resume", model_path, "--epochs",
                                  "501", "--quiet"], capture_output=True, text=True)
        check(resumed.returncode == 0 and "epochs 1 " in resumed.stdout,
              f"the CLI resumes the page's model: {resumed.stdout.strip() or resumed.stderr.strip()}")

        # Each preset (a few epochs) on WebGPU against the in-page CPU.
        for p in json.loads(call(d, "import('./pkg/gpu_train_web.js').then(m => m.presets())")):
            job = json.dumps({"preset": p["name"], "epochs": 20})
            r = call(d, "window.gpuTrain.trainBoth(arguments[0]).then(r => r.parity)", job)
            check(r["passed"], f"preset {p['name']} (20 epochs): WebGPU within tolerance of the "
                               f"CPU (worst {r['worst_ratio']:.3f})")

        # A sweep in the page, on WebGPU and on the CPU.
        for device in ["gpu", "cpu"]:
            batching = sweep_matches_runs(d, device, "")
            if device == "gpu":
                check(batching.startswith("every model in the same dispatches"),
                      f"the page's sweep in the {adapter['layout']} layout shares its dispatches "
                      f"({batching})")
        s = call(d, "window.gpuTrain.sweep('{\"epochs\": 40}', 'lr=1e-6,1', 'gpu').then(r => "
                    "r.variants.map(v => [v.diverged_at, v.summary.losses.length]))")
        check(s[0] == [None, 40] and s[1][0] is not None and s[1][1] == s[1][0] + 1,
              f"sweep in the page: a diverging variant stops alone, the other runs on ({s})")
        e = error_of(d, "window.gpuTrain.sweep('{}', 'lr=1e-3,,2', 'cpu')")
        check(e is not None and "lr: item 2 of `1e-3,,2` is empty" in e,
              f"sweep in the page: a bad list names the setting and the item ({e})")

        # verify --quick: every check passes.
        report = call(d, "window.gpuTrain.verify(true)")
        failed = [c for c in report["checks"] if not c["passed"]]
        check(len(report["checks"]) > 100 and not failed,
              f"verify --quick: {len(report['checks']) - len(failed)} of {len(report['checks'])} "
              f"checks pass" + (f"; first failure {failed[0]}" if failed else ""))
        with open(os.path.join(out, "page-verify.json"), "w") as f:
            json.dump(report, f, indent=1)

        # bench --quick: the results JSON, compared by the CLI with a native results file.
        text = call(d, "window.gpuTrain.bench(true)")
        bench_path = os.path.join(out, "page-bench.json")
        with open(bench_path, "w") as f:
            f.write(text)
        native_results = os.path.join(ROOT, "benches/results/2026-12-01-xeon-lavapipe-quick-texels.json")
        cmp = subprocess.run([args.cli, "bench", "compare", bench_path, native_results],
                             capture_output=True, text=True)
        print("\n".join("     " + line for line in cmp.stdout.splitlines()[:14]))
        check(cmp.returncode == 0 and "train/default" in cmp.stdout,
              f"gpu-train bench compare reads the page's results ({cmp.stderr.strip()[:200]})")
        rows = json.loads(text)["rows"]
        kinds = sorted({r["kind"] for r in rows})
        check(rows and all(r["status"] == "ok" for r in rows) and kinds == ["matmul", "train"],
              f"bench --quick in the page: {len(rows)} rows ({', '.join(kinds)}), all ok"
              + "".join(f"; {r['case']}: {r['status']} {r.get('error') or ''}"
                        for r in rows if r["status"] != "ok"))

        tuned(d, url, native)

        # Bad input.
        e = error_of(d, "window.gpuTrain.trainNpy('{}', 'gpu', {name: 'broken.npy', bytes: new "
                        "Uint8Array([1, 2, 3])}, {name: 'y.npy', bytes: new Uint8Array([])})")
        check(e is not None and "broken.npy" in e, f"a malformed .npy is refused naming it: {e}")
        job = json.dumps({"layers": [64, 9000, 10], "epochs": 1})
        e = error_of(d, "window.gpuTrain.train(arguments[0], 'gpu')", job)
        check(e is not None and "max_texture_dimension_2d" in e and "w2" in e,
              f"a job too large for the adapter names the buffer and the limit: {e}")

        # The buffer layout (what browsers without read-only storage textures get) under
        # WebGPU's default limits (what any browser grants): the same trajectory, every check.
        adapter = open_page(d, url + "?layout=buffer&limits=webgpu")
        check(adapter.get("ok") and adapter["layout"] == "buffer" and adapter["limits"] == "webgpu",
              f"?layout=buffer&limits=webgpu opens the buffer layout under WebGPU's limits "
              f"({adapter.get('layout')}, {adapter.get('limits')}, {adapter.get('error')})")
        default_job_within(d, native, "in the buffer layout")
        batching = sweep_matches_runs(d, "gpu", " in the buffer layout")
        check(batching.startswith("every model in the same dispatches"),
              f"the page's sweep in the buffer layout shares its dispatches ({batching})")
        report = call(d, "window.gpuTrain.verify(true)")
        failed = [c for c in report["checks"] if not c["passed"]]
        layouts = {c["layout"] for c in report["checks"] if c.get("layout", "-") != "-"}
        check(len(report["checks"]) > 100 and not failed and layouts == {"buffer"},
              f"verify --quick in the buffer layout: {len(report['checks']) - len(failed)} of "
              f"{len(report['checks'])} checks pass, layouts {sorted(layouts)}"
              + (f"; first failure {failed[0]}" if failed else ""))
        with open(os.path.join(out, "page-verify-buffer.json"), "w") as f:
            json.dump(report, f, indent=1)
        job = json.dumps({"layers": [64, 4096, 8193], "epochs": 1})
        e = error_of(d, "window.gpuTrain.train(arguments[0], 'gpu')", job)
        check(e is not None and "max_storage_buffer_binding_size" in e and "w2" in e,
              f"a job past WebGPU's storage binding size names the buffer and the limit: {e}")

        # A page option it does not know is refused with a message, not a blank page.
        open_page(d, url + "?layout=bogus")
        text = d.find_element("id", "adapter").text
        check("layout `bogus`" in text, f"?layout=bogus says: {text[:120]}")
    finally:
        d.quit()

    # Without WebGPU the page says so (and what to enable) instead of staying blank.
    d = browser([])
    try:
        ok = open_page(d, url).get("ok")
        text = d.find_element("id", "adapter").text
        check(not ok and "WebGPU" in text, f"without WebGPU the page says: {text[:160]}")
    finally:
        d.quit()

    print(f"{len(failures)} failures; {time.time() - start:.0f} s; outputs in {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
