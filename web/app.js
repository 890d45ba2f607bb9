// The page: wires the controls to the wasm library (pkg/, made by web/build.sh). Every
// computation is the library's; this file only shows what it reports.
import init, { open_page, presets, parity_json } from "./pkg/gpu_train_web.js";

const $ = (id) => document.getElementById(id);
const escape = (s) => String(s).replace(/[&<>]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;" })[c]);
const params = new URLSearchParams(location.search);

// The state the end-to-end test reads (web/test/e2e.py) as well as the page.
const state = { adapter: null, runs: {}, sweep: null, verify: null, tune: null, bench: null, errors: [] };
let page = null;
// Whether a sweep left a model to download (its best variant).
let sweptModel = false;

function showError(where, e) {
  const msg = e instanceof Error ? e.message : String(e);
  state.errors.push(msg);
  $(where).insertAdjacentHTML("beforeend", `<p class="error">${escape(msg)}</p>`);
  return msg;
}

// A log-scale loss chart of `curves` ({label, first, losses, color, width, dash}) on the canvas
// `id`: every decade the losses span labelled on the left, whole epochs along the bottom, the
// legend at the top right (clear of both axes; as many labels as fit, then how many more).
function drawChart(id, curves) {
  const c = $(id);
  const g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const runs = curves.filter((r) => r && r.losses.length);
  if (!runs.length) return;
  const all = runs.flatMap((r) => r.losses).filter((l) => l > 0 && isFinite(l));
  if (!all.length) return;
  // Whole decades, so that each one the losses span has its power of ten on the axis.
  let lo = Math.floor(Math.log10(Math.min(...all))), hi = Math.ceil(Math.log10(Math.max(...all)));
  if (hi <= lo) hi = lo + 1;
  const epochs = Math.max(...runs.map((r) => r.first + r.losses.length));
  const [L, R, T, B] = [64, 20, 16, 34];
  const x = (e) => L + ((c.width - L - R) * e) / Math.max(1, epochs - 1);
  const y = (l) => T + ((c.height - T - B) * (hi - Math.log10(l))) / (hi - lo);
  g.font = "13px sans-serif";
  g.fillStyle = "#555";
  g.strokeStyle = "#e4e4e4";
  g.lineWidth = 1;
  g.textAlign = "right";
  g.textBaseline = "middle";
  const every = Math.ceil((hi - lo) / 12);
  for (let d = lo; d <= hi; d += every) {
    const yy = y(10 ** d);
    g.beginPath(); g.moveTo(L, yy); g.lineTo(c.width - R, yy); g.stroke();
    g.fillText(`1e${d}`, L - 6, yy);
  }
  g.textAlign = "center";
  g.textBaseline = "top";
  const step = Math.max(1, Math.ceil((epochs - 1) / 10));
  for (let e = 0; e <= epochs - 1; e += step) {
    g.fillText(String(e), x(e), c.height - B + 6);
  }
  g.textAlign = "left";
  g.textBaseline = "alphabetic";
  g.fillText("loss (log)", 4, T - 4 + 13);
  g.textAlign = "right";
  g.fillText("epoch", c.width - R, c.height - 4);
  const fit = Math.max(1, Math.floor((c.height - T - B - 24) / 16));
  runs.forEach((r, i) => {
    g.strokeStyle = r.color || "#888";
    g.lineWidth = r.width || 2;
    g.setLineDash(r.dash || []);
    g.beginPath();
    // A diverged run's last loss is not finite: its curve ends at the epoch before.
    r.losses.forEach((l, j) => {
      if (!isFinite(l)) return;
      (j ? g.lineTo : g.moveTo).call(g, x(r.first + j), y(Math.max(l, 10 ** lo)));
    });
    g.stroke();
    g.setLineDash([]);
    g.fillStyle = g.strokeStyle;
    if (i < fit) g.fillText(r.label, c.width - R - 8, T + 18 + 16 * i);
  });
  if (runs.length > fit) {
    g.fillStyle = "#555";
    g.fillText(`… and ${runs.length - fit} more (the table below)`, c.width - R - 8, T + 18 + 16 * fit);
  }
  g.textAlign = "left";
}

// The training runs (WebGPU, then the CPU reference) on the train chart.
function draw() {
  const styles = { gpu: { color: "#1f5fbf", width: 3 }, cpu: { color: "#d9731a", width: 1.5, dash: [6, 4] } };
  drawChart("chart", Object.entries(state.runs).map(([name, r]) => ({ ...r, ...(styles[name] || {}) })));
}

// Ten colours, then the same ten dashed, dotted, ...: many curves stay told apart.
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const DASHES = [[], [8, 4], [2, 3], [10, 3, 2, 3]];
const curveStyle = (k) => ({ color: PALETTE[k % 10], dash: DASHES[Math.floor(k / 10) % 4], width: 2 });

// A sweep of `job` (JSON) over `lists` (`lr=1e-6,3e-6 seed=0,1`) on `device`: every variant's
// curve as it trains, then the table of their final figures.
async function sweep(job, lists, device) {
  const out = $("sweep-out");
  out.innerHTML = "";
  const curves = [];
  const onChunk = (k, first, losses) => {
    const c = curves[k] || (curves[k] = { first, losses: [], label: `variant ${k}`, ...curveStyle(k) });
    c.losses.push(...losses);
    drawChart("sweep-chart", curves);
  };
  const result = JSON.parse(await page.sweep(job, lists, device, onChunk));
  result.variants.forEach((v, k) => {
    if (!curves[k]) return;
    curves[k].label = v.label + (v.diverged_at != null ? ` (diverged at epoch ${v.diverged_at})` : "");
  });
  drawChart("sweep-chart", curves);
  const where = device === "gpu" ? `WebGPU (${state.adapter.name || "adapter"})` : "the CPU (wasm)";
  out.insertAdjacentHTML(
    "beforeend",
    `<p>${result.variants.length} variants varying ${escape(result.varied)} on ${escape(where)} in ` +
      `${result.train_s.toFixed(2)} s: ${escape(result.batching)}.</p>`,
  );
  const rows = result.variants.map((v, k) => {
    const s = v.summary;
    const last = s.losses.length ? s.losses[s.losses.length - 1] : null;
    const end = v.diverged_at != null ? `diverged at epoch ${v.diverged_at}` : last === null ? "-" : Number(last).toExponential(6);
    return `<tr><td>${k}</td><td>${escape(v.label)}</td><td>${escape(end)}</td></tr>`;
  });
  out.insertAdjacentHTML("beforeend", `<table><thead><tr><th>#</th><th>values</th><th>final loss</th></tr></thead><tbody>${rows.join("")}</tbody></table>`);
  if (result.best !== null) {
    out.insertAdjacentHTML("beforeend", `<p>The lowest final loss: variant ${result.best} (${escape(result.variants[result.best].label)}), the model "Download the model" gives.</p>`);
    sweptModel = true;
  }
  state.sweep = result;
  return result;
}

function spec() {
  const p = $("preset").value;
  const s = p === "default" ? {} : { preset: p };
  const e = parseInt($("epochs").value, 10);
  if (e > 0) s.epochs = e;
  return JSON.stringify(s);
}

async function readFile(input) {
  const f = input.files[0];
  return f ? { name: f.name, bytes: new Uint8Array(await f.arrayBuffer()) } : null;
}

// Train `job` (JSON) on `device`; the run's losses and summary.
async function train(job, device, data) {
  const run = { first: 0, losses: [], label: device === "gpu" ? `WebGPU: ${state.adapter.name || ""}` : "CPU reference (wasm)" };
  state.runs[device] = run;
  const onChunk = (first, losses) => {
    if (!run.losses.length) run.first = first;
    run.losses.push(...losses);
    draw();
  };
  const out = data
    ? await page.train_npy(job, device, data.x.name, data.x.bytes, data.y.name, data.y.bytes, onChunk)
    : await page.train(job, device, onChunk);
  Object.assign(run, JSON.parse(out));
  return run;
}

// The job on WebGPU and then on the CPU reference, with the parity of the two trajectories.
async function trainBoth(job, data) {
  const out = $("train-out");
  out.innerHTML = "";
  state.runs = {};
  const result = {};
  if (state.adapter.ok) {
    result.gpu = await train(job, "gpu", data);
    out.insertAdjacentHTML("beforeend", `<pre>${escape(result.gpu.line)}</pre>`);
  }
  result.cpu = await train(job, "cpu", data);
  out.insertAdjacentHTML("beforeend", `<pre>${escape(result.cpu.line)}</pre>`);
  if (result.gpu) {
    const p = JSON.parse(parity_json(result.gpu.summary.losses, result.cpu.summary.losses, result.cpu.summary.first_epoch));
    result.parity = p;
    const cls = p.passed ? "ok" : "fail";
    out.insertAdjacentHTML(
      "beforeend",
      `<p class="${cls}">Parity with the CPU reference over ${p.epochs} epochs: worst relative difference ` +
        `${p.worst_relative.toExponential(2)} (epoch ${p.worst_relative_epoch}); worst ${p.worst_ratio.toFixed(3)} ` +
        `of the trajectory tolerance 3e-3·√L + 1e-5·L (epoch ${p.worst_ratio_epoch}): ${p.passed ? "within" : "OUTSIDE"} it.</p>`,
    );
  }
  $("download").disabled = false;
  return result;
}

async function verify(quick) {
  const out = $("verify-out");
  out.innerHTML = "<table><thead><tr><th>kernel</th><th>variant</th><th>layout</th><th>shape</th><th>worst/bound</th><th>bound</th><th></th></tr></thead><tbody></tbody></table>";
  const body = out.querySelector("tbody");
  const report = JSON.parse(
    await page.verify(quick, navigator.userAgent, (text) => {
      const c = JSON.parse(text);
      body.insertAdjacentHTML(
        "beforeend",
        `<tr><td>${escape(c.kernel)}</td><td>${escape(c.variant)}</td><td>${escape(c.layout)}</td><td>${escape(c.shape)}</td>` +
          `<td>${c.ratio === null ? "∞" : Number(c.ratio).toFixed(3)}</td><td>${escape(c.bound)}</td>` +
          `<td class="${c.passed ? "ok" : "fail"}">${c.passed ? "pass" : "FAIL " + escape(c.note || "")}</td></tr>`,
      );
    }),
  );
  const failed = report.checks.filter((c) => !c.passed).length;
  out.insertAdjacentHTML("beforeend", `<p class="${failed ? "fail" : "ok"}">${report.checks.length - failed} of ${report.checks.length} checks pass.</p>`);
  state.verify = report;
  return report;
}

async function bench(quick) {
  const out = $("bench-out");
  out.innerHTML = "<pre></pre>";
  const pre = out.querySelector("pre");
  const text = await page.bench(quick, navigator.userAgent, (_row, line) => {
    pre.textContent += line + "\n";
  });
  const link = $("bench-json");
  link.href = URL.createObjectURL(new Blob([text], { type: "application/json" }));
  link.hidden = false;
  state.bench = text;
  return text;
}

// Tune for `job` (JSON), keep the outcome in the browser's storage, and open the adapter again
// so that it takes effect.
async function tune(job, quick) {
  const out = $("tune-out");
  out.innerHTML = "<pre></pre>";
  const pre = out.querySelector("pre");
  const result = JSON.parse(
    await page.tune(job, quick, (line) => {
      pre.textContent += line + "\n";
    }),
  );
  pre.textContent += `kept in this browser's storage as ${result.key}\n`;
  state.tune = result;
  await openAdapter();
  return result;
}

async function forget() {
  const had = page.forget_tuning();
  $("tune-out").innerHTML = `<p>${had ? "The tuning of this adapter is forgotten." : "There was no tuning of this adapter here."}</p>`;
  await openAdapter();
  return had;
}

const GPU_BUTTONS = ["sweep-gpu", "verify", "tune", "forget", "bench"];

function guard(where, f) {
  return async () => {
    document.querySelectorAll("button").forEach((b) => (b.disabled = true));
    try {
      await f();
    } catch (e) {
      showError(where, e);
    } finally {
      document.querySelectorAll("button").forEach((b) => (b.disabled = false));
      $("download").disabled = !Object.keys(state.runs).length && !sweptModel;
      if (!state.adapter.ok) GPU_BUTTONS.forEach((b) => ($(b).disabled = true));
    }
  };
}

// What the layout choice rests on, in words.
function layoutWhy(a) {
  if (a.layout_from === "asked") return "asked for with ?layout=";
  if (a.layout_from === "measured") return "measured faster here by Tune";
  return `by the WGSL language features: ${a.wgsl_language_features.join(", ") || "none"}`;
}

function tuningText(t) {
  if (!t || !t.stored) return "untuned (Tune below measures this adapter)";
  if (t.ignored) return `the stored tuning is ignored: ${t.ignored}; Tune again`;
  return `tuned: ${t.shapes} product shapes${t.layout ? `, training fastest in the ${t.layout} layout` : ""}`;
}

// Open the browser's adapter (again, after tuning) and show it; false where the options are bad.
async function openAdapter() {
  // ?limits=webgpu asks for WebGPU's default limits; ?layout=texels|buffer picks the layout.
  try {
    page = await open_page(params.get("limits") || "adapter", params.get("layout") || "auto");
  } catch (e) {
    $("adapter").classList.add("missing");
    $("adapter").innerHTML = `<b>Bad page option.</b> ${escape(String(e))}`;
    return false;
  }
  state.adapter = JSON.parse(page.adapter());
  const a = state.adapter;
  if (a.ok) {
    $("adapter").innerHTML =
      `<b>${escape(a.name || "(unnamed adapter)")}</b> — ${escape(a.device_type)}, ${escape(a.backend)}, driver ${escape(a.driver || "-")}; ` +
      `layout <b>${escape(a.layout)}</b> (${escape(layoutWhy(a))}); ${escape(tuningText(a.tuning))}; ` +
      `limits ${escape(a.limits)}: storage binding ${a.max_storage_buffer_binding_size} B, texture side ${a.max_texture_dimension_2d}`;
  } else {
    $("adapter").classList.add("missing");
    const head = "gpu" in navigator ? "WebGPU is here, but not usable." : "No WebGPU here.";
    $("adapter").innerHTML = `<b>${head}</b> ${escape(a.error)}`;
    GPU_BUTTONS.forEach((b) => ($(b).disabled = true));
  }
  return true;
}

async function main() {
  await init();
  if (!(await openAdapter())) return;
  const list = JSON.parse(presets());
  $("preset").innerHTML =
    `<option value="default">the default job (batch 64, 1000 → 100 → 10, 500 epochs)</option>` +
    list.map((p) => `<option value="${escape(p.name)}">${escape(p.name)}: ${escape(p.about)}</option>`).join("");
  $("train").onclick = guard("train-out", async () => {
    const [x, y] = [await readFile($("x")), await readFile($("y"))];
    if (!!x !== !!y) throw new Error("give both x.npy and y.npy, or neither");
    await trainBoth(spec(), x && { x, y });
  });
  $("download").onclick = guard("train-out", async () => {
    const bytes = page.model_safetensors();
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" }));
    a.download = "model.safetensors";
    a.click();
  });
  $("sweep-gpu").onclick = guard("sweep-out", () => sweep(spec(), $("sweep-lists").value, "gpu"));
  $("sweep-cpu").onclick = guard("sweep-out", () => sweep(spec(), $("sweep-lists").value, "cpu"));
  $("verify").onclick = guard("verify-out", () => verify(true));
  $("tune").onclick = guard("tune-out", () => tune(spec(), false));
  $("forget").onclick = guard("tune-out", () => forget());
  $("bench").onclick = guard("bench-out", () => bench(true));
}

// What the end-to-end test drives; each returns what the page showed.
window.gpuTrain = {
  state,
  ready: main().catch((e) => {
    const msg = showError("adapter", e);
    throw new Error(msg);
  }),
  trainBoth: (job) => trainBoth(job),
  train: (job, device) => train(job, device),
  trainNpy: (job, device, x, y) => train(job, device, { x, y }),
  sweep: (job, lists, device) => sweep(job, lists, device),
  verify: (quick) => verify(quick),
  tune: (job, quick) => tune(job, quick),
  forget: () => forget(),
  bench: (quick) => bench(quick),
  model: () => Array.from(page.model_safetensors()),
};
