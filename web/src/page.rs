//! The functions the page calls (wasm only). Each long one returns a Promise and reports progress
//! through a JavaScript callback; results are JSON text.

use gpu_train::backend::{Backend, TrainState};
use gpu_train::bench::{self, results::Host};
use gpu_train::cpu::{CpuBackend, CpuModels};
use gpu_train::gpu::layout::Layout;
use gpu_train::gpu::tune::{self, AdapterId, Table};
use gpu_train::gpu::{GpuBackend, GpuContext, GpuModels, LimitsChoice};
use gpu_train::init::HostState;
use gpu_train::io::{checkpoint, summary::Summary};
use gpu_train::job::{Job, PRESETS};
use gpu_train::spec::JobSpec;
use gpu_train::sweep::{Grid, Models, SweepSession, MAX_VARIANTS};
use gpu_train::train::Session;
use gpu_train::verify;
use js_sys::{Float32Array, Function, Promise, Uint8Array};
use serde_json::json;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, JsFuture};
use web_time::{Duration, Instant};

/// What the page shows where WebGPU is missing.
const NO_WEBGPU: &str = "This browser offers no WebGPU (navigator.gpu is undefined). Use a \
    browser with WebGPU: Chrome or Edge 113+ (on Linux start it with \
    --enable-unsafe-webgpu --enable-features=Vulkan), Firefox 141+ on Windows, Safari 26+; \
    in Firefox Nightly set dom.webgpu.enabled. The CPU reference below still runs.";

fn js_err(e: impl std::fmt::Display) -> JsValue {
    JsValue::from_str(&e.to_string())
}

/// A job's error as the page shows it: a bad value named by its JSON key, not by a flag.
fn job_err(e: gpu_train::Error) -> JsValue {
    js_err(e.for_json())
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<JsValue, JsValue> {
    serde_json::to_string(v)
        .map(|s| JsValue::from_str(&s))
        .map_err(js_err)
}

/// The browser's adapter, opened, or why not.
struct Inner {
    gpu: Result<(Arc<GpuContext>, Layout), String>,
    /// The layout the page was opened with, if not `auto`: verify and tune take that one alone.
    asked: Option<Layout>,
    /// The adapter's tuning in the browser's storage: its key, and what it held or why it was
    /// ignored.
    tuning: serde_json::Value,
    wgsl: Vec<&'static str>,
    /// The last job trained here and its end state, for the model download.
    last: RefCell<Option<(Job, TrainState, usize)>>,
}

/// The page's handle: the browser's adapter (if any) and the last model trained.
#[wasm_bindgen]
pub struct Page(Rc<Inner>);

/// Open the browser's WebGPU adapter with `limits` (`adapter`: all it offers; `webgpu`:
/// WebGPU's defaults) in `layout` (`auto`: by the adapter's WGSL language features and type, as
/// `--layout auto`; `texels` or `buffer`: that one, or the reason this adapter cannot run it).
/// Resolves to a [`Page`] whether or not there is one: [`Page::adapter`] tells.
#[wasm_bindgen]
pub fn open_page(limits: String, layout: String) -> Promise {
    // A panic (a bug) reaches the console with its message, not as a bare "unreachable".
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&JsValue::from_str(&format!("gpu-train panicked: {info}")));
    }));
    future_to_promise(async move {
        let limits = match limits.as_str() {
            "adapter" => LimitsChoice::Adapter,
            "webgpu" => LimitsChoice::Webgpu,
            other => return Err(js_err(format!("limits `{other}`: adapter or webgpu"))),
        };
        let layout = match layout.as_str() {
            "auto" => None,
            "texels" => Some(Layout::Texels),
            "buffer" => Some(Layout::Buffer),
            other => return Err(js_err(format!("layout `{other}`: auto, texels or buffer"))),
        };
        let (gpu, wgsl, tuning) = open_gpu(limits, layout).await;
        let inner = Inner {
            gpu,
            asked: layout,
            tuning,
            wgsl,
            last: RefCell::new(None),
        };
        Ok(JsValue::from(Page(Rc::new(inner))))
    })
}

/// What [`open_gpu`] opened: the context and its layout (or why none), the WGSL language
/// features, and the tuning found in the browser's storage.
type Opened = (
    Result<(Arc<GpuContext>, Layout), String>,
    Vec<&'static str>,
    serde_json::Value,
);

async fn open_gpu(limits: LimitsChoice, asked: Option<Layout>) -> Opened {
    let none = serde_json::Value::Null;
    let has_gpu = web_sys::window()
        .map(|w| w.navigator())
        .and_then(|n| js_sys::Reflect::get(&n, &JsValue::from_str("gpu")).ok())
        .is_some_and(|g| !g.is_undefined() && !g.is_null());
    if !has_gpu {
        return (Err(NO_WEBGPU.into()), Vec::new(), none);
    }
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::BROWSER_WEBGPU,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let features = instance.wgsl_language_features();
    let wgsl: Vec<&'static str> = [
        (
            wgpu::WgslLanguageFeatures::ReadOnlyAndReadWriteStorageTextures,
            "readonly_and_readwrite_storage_textures",
        ),
        (
            wgpu::WgslLanguageFeatures::Packed4x8IntegerDotProduct,
            "packed_4x8_integer_dot_product",
        ),
        (
            wgpu::WgslLanguageFeatures::PointerCompositeAccess,
            "pointer_composite_access",
        ),
    ]
    .into_iter()
    .filter(|(f, _)| features.contains(f.clone()))
    .map(|(_, n)| n)
    .collect();
    let options = wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        ..Default::default()
    };
    let adapter = match instance.request_adapter(&options).await {
        Ok(a) => a,
        Err(e) => {
            let msg = format!(
                "navigator.gpu is there but gave no adapter ({e}): WebGPU may be disabled or \
                 blocked for this GPU (see chrome://gpu); the CPU reference below still runs"
            );
            return (Err(msg), wgsl, none);
        }
    };
    let name = adapter_identity().await;
    let mut tuning = none;
    let opened = GpuContext::request(&adapter, limits, features, name).await;
    let gpu = opened.and_then(|mut ctx| {
        // The tuning `tune` measured here before, as natively from the cache file.
        let (table, about) = stored_tuning(&ctx.info);
        tuning = match Arc::get_mut(&mut ctx) {
            Some(c) => {
                c.tuning = table;
                about
            }
            // Not reached: the context was opened just now and is not shared yet.
            None => json!({"stored": true, "ignored": "the context was already in use"}),
        };
        // The layout by what the shader compiler accepts (its WGSL language features), never
        // by the browser's name: texels where read-only storage textures are there and the
        // adapter's type prefers them, else buffer.
        let layout = asked.unwrap_or_else(|| ctx.auto_layout());
        ctx.kernels.layout(layout)?;
        Ok((ctx, layout))
    });
    (gpu.map_err(|e| e.to_string()), wgsl, tuning)
}

/// The page's storage (`localStorage`), if the browser keeps one for it.
fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}

/// The adapter's tuning from the browser's storage if it holds a current one: the cache file
/// (`tune::CacheFile`, the native file's JSON) under `tune::cache_key`, trusted only as natively
/// (this build's kernels, this adapter).
fn stored_file(info: &wgpu::AdapterInfo) -> Option<Result<tune::CacheFile, String>> {
    let text = storage()?.get_item(&tune::cache_key(info)).ok()??;
    Some(tune::parse_cache(&text, &AdapterId::of(info)))
}

/// Merge `entries` (and `layout`, where given) into the adapter's tuning in the browser's storage
/// (a stored one that is corrupt or stale is replaced): its key and the tuning kept.
fn keep_tuning(
    info: &wgpu::AdapterInfo,
    entries: &[tune::Entry],
    layout: Option<tune::LayoutChoice>,
) -> Result<(String, tune::CacheFile), JsValue> {
    let old = stored_file(info).and_then(|f| f.ok());
    let file = tune::merge(AdapterId::of(info), old, entries, layout);
    let text = serde_json::to_string(&file).map_err(js_err)?;
    let key = tune::cache_key(info);
    match storage().map(|s| s.set_item(&key, &text)) {
        Some(Ok(())) => Ok((key, file)),
        _ => Err(js_err(
            "the browser keeps no storage for this page (a private window, or storage blocked \
             or full): the tuning was measured but not kept",
        )),
    }
}

/// [`stored_file`] as the context's table, and what the page says of it: `{"key", "stored",
/// "shapes", "layout", "measured"}`, or `"ignored"` with the reason.
fn stored_tuning(info: &wgpu::AdapterInfo) -> (Table, serde_json::Value) {
    let key = tune::cache_key(info);
    match stored_file(info) {
        None => (Table::default(), json!({"key": key, "stored": false})),
        Some(Ok(file)) => {
            let about = json!({
                "key": key,
                "stored": true,
                "shapes": file.entries.len(),
                "layout": file.layout.as_ref().map(|c| c.layout.name()),
                "measured": file.layout.as_ref().map(|c| &c.measured),
            });
            (Table::of_file(&file), about)
        }
        Some(Err(why)) => {
            let about = json!({"key": key, "stored": true, "ignored": why});
            (Table::default(), about)
        }
    }
}

/// The adapter as the browser names it (`GPUAdapterInfo`: vendor, architecture, device,
/// description; wgpu's WebGPU backend reports no name), if it does.
async fn adapter_identity() -> Option<String> {
    use wasm_bindgen::JsCast;
    let get = |o: &JsValue, k: &str| js_sys::Reflect::get(o, &JsValue::from_str(k)).ok();
    let gpu = get(&web_sys::window()?.navigator().into(), "gpu")?;
    let request: Function = get(&gpu, "requestAdapter")?.dyn_into().ok()?;
    let options = js_sys::Object::new();
    let _ = js_sys::Reflect::set(
        &options,
        &JsValue::from_str("powerPreference"),
        &JsValue::from_str("high-performance"),
    );
    let promise: Promise = request.call1(&gpu, &options).ok()?.dyn_into().ok()?;
    let adapter = JsFuture::from(promise).await.ok()?;
    let info = get(&adapter, "info")?;
    let parts: Vec<String> = ["vendor", "architecture", "device", "description"]
        .iter()
        .filter_map(|k| get(&info, k)?.as_string())
        .filter(|s| !s.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// Yield to the browser's event loop (a macrotask), so that the page repaints between chunks of
/// a run that never waits (the CPU path).
async fn yield_now() {
    let promise = Promise::new(&mut |resolve, _| {
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 0);
        }
    });
    let _ = JsFuture::from(promise).await;
}

/// The browser's description of itself, for the results' host.
fn browser_host(user_agent: &str) -> Host {
    Host {
        cpu: format!("browser: {user_agent}"),
        threads: 1,
        os: "browser".into(),
        arch: "wasm32".into(),
        fma_peak: None,
    }
}

#[wasm_bindgen]
impl Page {
    /// The adapter as JSON: `{"ok": true, "name", "backend", "device_type", "driver",
    /// "layout", "limits", "wgsl_language_features": [...], "max_storage_buffer_binding_size",
    /// ...}` or `{"ok": false, "error": "..."}`.
    pub fn adapter(&self) -> String {
        let inner = &self.0;
        let v = match &inner.gpu {
            Ok((ctx, layout)) => {
                let i = &ctx.info;
                let l = &ctx.limits;
                json!({
                    "ok": true,
                    "name": i.name,
                    "vendor": i.vendor,
                    "device_type": format!("{:?}", i.device_type),
                    "backend": i.backend.to_string(),
                    "driver": format!("{} {}", i.driver, i.driver_info).trim(),
                    "layout": layout.name(),
                    "layout_from": if inner.asked.is_some() {
                        "asked"
                    } else if ctx.tuning.layout == Some(*layout) {
                        "measured"
                    } else {
                        "rule"
                    },
                    "tuning": inner.tuning,
                    "limits": ctx.limits_choice.name(),
                    "wgsl_language_features": inner.wgsl,
                    "max_storage_buffer_binding_size": l.max_storage_buffer_binding_size,
                    "max_buffer_size": l.max_buffer_size,
                    "max_storage_textures_per_shader_stage": l.max_storage_textures_per_shader_stage,
                    "max_storage_buffers_per_shader_stage": l.max_storage_buffers_per_shader_stage,
                    "max_texture_dimension_2d": l.max_texture_dimension_2d,
                    "timestamps": serde_json::to_value(ctx.timestamps()).unwrap_or_default(),
                })
            }
            Err(e) => json!({"ok": false, "error": e, "wgsl_language_features": inner.wgsl}),
        };
        v.to_string()
    }

    /// Train the job `spec` (JSON, see `JobSpec`) on `device` (`gpu` or `cpu`), calling
    /// `on_chunk(first_epoch, losses: Float32Array)` after every chunk. Resolves to
    /// `{"summary": ..., "line": "..."}`.
    pub fn train(&self, spec: String, device: String, on_chunk: Function) -> Promise {
        let inner = self.0.clone();
        future_to_promise(async move {
            let spec = JobSpec::parse(&spec).map_err(job_err)?;
            let (job, state) = spec.resolve().map_err(job_err)?;
            train(&inner, job, state, &device, &on_chunk).await
        })
    }

    /// [`Page::train`] on a dataset from two .npy files (their names and bytes).
    #[allow(clippy::too_many_arguments)]
    pub fn train_npy(
        &self,
        spec: String,
        device: String,
        x_name: String,
        x: Vec<u8>,
        y_name: String,
        y: Vec<u8>,
        on_chunk: Function,
    ) -> Promise {
        let inner = self.0.clone();
        future_to_promise(async move {
            let spec = JobSpec::parse(&spec).map_err(job_err)?;
            let (job, state) = spec
                .resolve_npy((&x_name, &x), (&y_name, &y))
                .map_err(job_err)?;
            train(&inner, job, state, &device, &on_chunk).await
        })
    }

    /// A sweep (`gpu-train sweep`): every variant of the job `spec` that `lists` make
    /// (`lr=1e-3,3e-3 seed=0,1`: the settings a sweep can vary, as [`Grid::parse`] reads them),
    /// trained together on `device` (`gpu`: in the same dispatches, but a dynamic-depth net's;
    /// `cpu`), calling `on_chunk(k, first_epoch, losses: Float32Array)` after every chunk of
    /// variant `k`. Resolves to `{"varied", "batching", "train_s", "best", "variants": [{"label",
    /// "values", "diverged_at", "summary", "line"}]}`, each variant's summary that of a run of the
    /// job with its values, bit for bit; `best` the variant of the lowest final loss (null if
    /// all diverged), which becomes the model [`Page::model_safetensors`] offers.
    pub fn sweep(
        &self,
        spec: String,
        lists: String,
        device: String,
        on_chunk: Function,
    ) -> Promise {
        let inner = self.0.clone();
        future_to_promise(async move {
            let base = JobSpec::parse(&spec).map_err(job_err)?;
            let grid = Grid::parse(&lists, MAX_VARIANTS).map_err(js_err)?;
            sweep(&inner, &base, &grid, &device, &on_chunk).await
        })
    }

    /// The last model trained here as a safetensors file (what `gpu-train --resume`, `eval`,
    /// `predict` and PyTorch's `safetensors.torch.load_file` read).
    pub fn model_safetensors(&self) -> Result<Uint8Array, JsValue> {
        let last = self.0.last.borrow();
        let Some((job, state, epoch)) = last.as_ref() else {
            return Err(js_err("no model yet: train a job first"));
        };
        let name = std::path::Path::new("model.safetensors");
        let bytes = checkpoint::model_bytes(name, job, state, *epoch).map_err(js_err)?;
        Ok(Uint8Array::from(&bytes[..]))
    }

    /// `gpu-train verify` (`quick`: `--quick`) on the browser's adapter, calling
    /// `on_check(check JSON)` as each completes. Resolves to the report JSON (the schema of
    /// `verify --json`), the browser in its host.
    pub fn verify(&self, quick: bool, user_agent: String, on_check: Function) -> Promise {
        let inner = self.0.clone();
        future_to_promise(async move {
            let (ctx, layout) = inner.gpu.as_ref().map_err(js_err)?;
            let info = ctx.describe(*layout);
            let mut report_check = |c: &verify::Check| {
                let text = serde_json::to_string(c).unwrap_or_default();
                let _ = on_check.call1(&JsValue::NULL, &JsValue::from_str(&text));
            };
            let report = verify::run_on(
                ctx,
                info,
                browser_host(&user_agent),
                inner.asked,
                quick,
                &mut report_check,
            )
            .await;
            to_json(&report)
        })
    }

    /// `gpu-train tune` on the browser's adapter for the job `spec` (JSON; its products), each
    /// layout the page may take (every one the adapter runs, or the one asked for), and with more
    /// than one, the job's training timed in each (`quick`: shorter samples). Calls
    /// `on_line(text)` per variant and shape; keeps the outcome in the browser's storage, merged
    /// into what it held, where the next page opened on this adapter finds it. Resolves to
    /// `{"key", "file"}` (the cache file's JSON, as natively).
    pub fn tune(&self, spec: String, quick: bool, on_line: Function) -> Promise {
        let inner = self.0.clone();
        future_to_promise(async move {
            let (ctx, _) = inner.gpu.as_ref().map_err(js_err)?;
            let (job, _) = JobSpec::parse(&spec)
                .and_then(|s| s.resolve())
                .map_err(job_err)?;
            let layouts: Vec<Layout> = match inner.asked {
                Some(l) => vec![l],
                None => (Layout::ALL.into_iter())
                    .filter(|&l| ctx.kernels.supports(l))
                    .collect(),
            };
            let mut report = |line: &str| {
                let _ = on_line.call1(&JsValue::NULL, &JsValue::from_str(line));
            };
            let shapes = bench::products(&job);
            let target_s = if quick { 0.02 } else { 0.1 };
            let choose = inner.asked.is_none();
            let run =
                bench::tuning::run(ctx, &layouts, &job, &shapes, target_s, choose, &mut report);
            let tuning = run.await.map_err(js_err)?;
            let (key, file) = keep_tuning(&ctx.info, &tuning.entries, tuning.layout)?;
            to_json(&json!({"key": key, "file": file}))
        })
    }

    /// Remove this adapter's tuning from the browser's storage; whether it held one.
    pub fn forget_tuning(&self) -> Result<bool, JsValue> {
        let (ctx, _) = self.0.gpu.as_ref().map_err(js_err)?;
        let key = tune::cache_key(&ctx.info);
        let Some(s) = storage() else {
            return Ok(false);
        };
        let had = s.get_item(&key).ok().flatten().is_some();
        s.remove_item(&key).map_err(|e| js_err(format!("{e:?}")))?;
        Ok(had)
    }

    /// `gpu-train bench`'s training cases (`quick`: `--quick`'s) on the browser's adapter and the
    /// CPU reference in wasm, calling `on_row(row JSON, line)` as each completes. Resolves to the
    /// results JSON that `gpu-train bench compare` reads.
    pub fn bench(&self, quick: bool, user_agent: String, on_row: Function) -> Promise {
        let inner = self.0.clone();
        future_to_promise(async move {
            let (ctx, layout) = inner.gpu.as_ref().map_err(js_err)?;
            let command = vec![
                "gpu-train (browser page)".to_string(),
                "bench".to_string(),
                if quick { "--quick" } else { "" }.to_string(),
            ];
            let mut report_row = |r: &bench::results::Results, row: &bench::results::Row| {
                let text = serde_json::to_string(row).unwrap_or_default();
                let line = bench::row_line(r, row);
                let _ = on_row.call2(
                    &JsValue::NULL,
                    &JsValue::from_str(&text),
                    &JsValue::from_str(&line),
                );
            };
            let host = browser_host(&user_agent);
            let (results, tuned) =
                bench::run_suite(ctx, *layout, host, command, quick, &mut report_row).await;
            // What was tuned on the spot is kept, as natively in the cache file.
            if !tuned.is_empty() {
                if let Err(e) = keep_tuning(&ctx.info, &tuned, None) {
                    web_sys::console::warn_1(&e);
                }
            }
            to_json(&results)
        })
    }
}

/// Train `job` from `state` on `device`, reporting chunks; the summary JSON.
async fn train(
    inner: &Inner,
    job: Job,
    state: HostState,
    device: &str,
    on_chunk: &Function,
) -> Result<JsValue, JsValue> {
    let setup = Instant::now();
    let mut backend: Box<dyn Backend> = match device {
        "cpu" => Box::new(CpuBackend::new(&job, &state)),
        "gpu" => {
            let (ctx, layout) = inner.gpu.as_ref().map_err(js_err)?;
            let gpu = GpuBackend::create(ctx.clone(), &job, &state, *layout).await;
            Box::new(gpu.map_err(js_err)?)
        }
        other => return Err(js_err(format!("device `{other}`: gpu or cpu"))),
    };
    let setup_s = setup.elapsed().as_secs_f64();
    let device = backend.describe();
    let mut session = Session::new(&job, backend.as_mut(), 0);
    let mut shown = Instant::now();
    while let Some(chunk) = session.next_chunk().await.map_err(js_err)? {
        let losses = Float32Array::from(&chunk.losses[..]);
        on_chunk.call2(&JsValue::NULL, &JsValue::from(chunk.first as f64), &losses)?;
        if shown.elapsed() > Duration::from_millis(30) {
            yield_now().await;
            shown = Instant::now();
        }
    }
    let report = session.finish().await.map_err(js_err)?;
    let summary = Summary::new(device, &job, &report, setup_s, backend.stats());
    let end = backend.state_async().await.map_err(js_err)?;
    *inner.last.borrow_mut() = Some((job, end, report.end_epoch()));
    to_json(&json!({"summary": summary, "line": summary.line()}))
}

/// [`Page::sweep`] of the variants of `base` that `grid` makes.
async fn sweep(
    inner: &Inner,
    base: &JobSpec,
    grid: &Grid,
    device: &str,
    on_chunk: &Function,
) -> Result<JsValue, JsValue> {
    let (mut jobs, mut states) = (Vec::new(), Vec::new());
    for k in 0..grid.len() {
        let (job, state) = grid.spec(base, k).resolve().map_err(job_err)?;
        if k == 0 {
            // wasm32's memory is at most 4 GiB: the sweep's share, twice a lone job's most.
            let budget = Some(2 * gpu_train::job::MAX_HOST_BYTES);
            gpu_train::sweep::check_memory(&job, grid.len(), budget).map_err(js_err)?;
        }
        jobs.push(job);
        states.push(state);
    }
    let setup = Instant::now();
    let mut models: Box<dyn Models> = match device {
        "cpu" => Box::new(CpuModels::new(&jobs, &states)),
        "gpu" => {
            let (ctx, layout) = inner.gpu.as_ref().map_err(js_err)?;
            let gpu = GpuModels::create(ctx.clone(), &jobs, &states, *layout).await;
            Box::new(gpu.map_err(js_err)?)
        }
        other => return Err(js_err(format!("device `{other}`: gpu or cpu"))),
    };
    let setup_s = setup.elapsed().as_secs_f64();
    let mut session = SweepSession::new(&jobs, models.as_mut(), 0);
    let mut shown = Instant::now();
    while let Some(chunks) = session.next_chunk().await.map_err(js_err)? {
        for (k, chunk) in chunks.iter().enumerate() {
            let Some(chunk) = chunk else { continue };
            let losses = Float32Array::from(&chunk.losses[..]);
            let first = JsValue::from(chunk.first as f64);
            on_chunk.call3(&JsValue::NULL, &JsValue::from(k as f64), &first, &losses)?;
        }
        if shown.elapsed() > Duration::from_millis(30) {
            yield_now().await;
            shown = Instant::now();
        }
    }
    let outcomes = session.finish().await.map_err(js_err)?;
    let info = models.describe();
    let mut variants = Vec::with_capacity(jobs.len());
    for (k, outcome) in outcomes.iter().enumerate() {
        // As `gpu-train sweep` writes each variant's summary.
        let stats = models.stats_of(k);
        let summary = Summary::new(info.clone(), &jobs[k], outcome, setup_s, stats);
        let values: serde_json::Map<String, serde_json::Value> = (grid.values(k).iter())
            .map(|v| (v.name(), v.json()))
            .collect();
        variants.push(json!({
            "label": grid.label(k),
            "values": values,
            "diverged_at": outcome.diverged.map(|(epoch, _)| epoch),
            "line": summary.line(),
            "summary": summary,
        }));
    }
    // The variant of the lowest final loss (of those that did not diverge) is the model the
    // page offers for download.
    let best = (outcomes.iter().enumerate())
        .filter(|(_, o)| o.diverged.is_none())
        .filter_map(|(k, o)| o.final_loss().filter(|l| l.is_finite()).map(|l| (l, k)))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k);
    if let Some(k) = best {
        let end = models.model(k).state_async().await.map_err(js_err)?;
        *inner.last.borrow_mut() = Some((jobs[k].clone(), end, outcomes[k].end_epoch()));
    }
    let train_s = outcomes.first().map_or(0.0, |o| o.train_s);
    to_json(&json!({
        "varied": grid.describe(),
        "batching": models.batching(),
        "train_s": train_s,
        "best": best,
        "variants": variants,
    }))
}

/// The presets as JSON: `[{"name", "about", "job"}]`, `job` the preset's config.
#[wasm_bindgen]
pub fn presets() -> String {
    let list: Vec<_> = (PRESETS.iter())
        .map(|p| json!({"name": p.name, "about": p.about, "job": (p.job)()}))
        .collect();
    serde_json::Value::Array(list).to_string()
}

/// [`crate::parity`] as JSON.
#[wasm_bindgen]
pub fn parity_json(got: Vec<f32>, want: Vec<f32>, first: usize) -> String {
    serde_json::to_string(&crate::parity(&got, &want, first)).unwrap_or_default()
}
