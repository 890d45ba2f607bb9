//! `gpu_train._native`: the library under the Python package (python/gpu_train). Each function
//! is a few calls into the library, as the command line's commands are: the job from its JSON
//! ([`JobSpec`], the summary's `config` names), the arrays handed over with one copy into the
//! library's matrices, the run driven chunk by chunk by a [`Session`] with the GIL released, and
//! the results handed back as numpy arrays and JSON. Nothing here computes anything the library
//! does not.

use gpu_train::app::{open_backend_kept, open_models, KeptDevice};
use gpu_train::error::Error;
use gpu_train::eval::hold_out;
use gpu_train::gpu::adapters::{self, DeviceChoice};
use gpu_train::gpu::layout::Layout;
use gpu_train::gpu::tune::TuneMode;
use gpu_train::gpu::GpuOptions;
use gpu_train::init::HostState;
use gpu_train::init::{Matrix, Params};
use gpu_train::io::checkpoint::{named_tensors, params_from_tensors, Tensors};
use gpu_train::io::{data, npy, summary::Summary};
use gpu_train::job::Job;
use gpu_train::monitor::Monitor;
use gpu_train::spec::JobSpec;
use gpu_train::sweep::SweepSession;
use gpu_train::train::Outcome;
use gpu_train::train::Session;
use gpu_train::wait::block_on;
use numpy::{PyArray1, PyArrayDyn, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2};
use numpy::{PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

/// The GPU device the last run opened, kept for the next (see `app::open_backend_kept`): a
/// session's runs open it and compile its kernels once.
static KEPT: Mutex<Option<KeptDevice>> = Mutex::new(None);

/// What decides a net's tensors, as the keyword arguments name it (for `params` errors).
const FROM_KEYWORDS: &str = "layers, bias and activation";

/// What names the arguments of the command line's errors in Python: a flag becomes the keyword
/// argument of the same meaning.
fn python_name(flag: &str) -> Option<&'static str> {
    gpu_train::error::json_key(flag).or(match flag {
        "--device" => Some("device"),
        "--layout" => Some("layout"),
        "--val-split" => Some("val_split"),
        "--x" => Some("x"),
        "--y" => Some("y"),
        "--init" => Some("params"),
        _ => None,
    })
}

/// The library's error as a Python exception: bad input (exit code 2) a `ValueError` naming the
/// argument, an interrupt `KeyboardInterrupt`, anything else (a device failure) `RuntimeError`.
fn to_py(e: Error) -> PyErr {
    let e = match e {
        Error::InvalidArg { flag, msg } => Error::InvalidArg {
            flag: python_name(flag).unwrap_or(flag),
            msg,
        },
        e => e,
    };
    match e.exit_code() {
        2 => PyValueError::new_err(e.to_string()),
        130 => PyKeyboardInterrupt::new_err(e.to_string()),
        _ => PyRuntimeError::new_err(e.to_string()),
    }
}

/// A 2-D float array of either width, read in its logical order whatever its strides.
#[derive(FromPyObject)]
enum Floats<'py> {
    F32(PyReadonlyArray2<'py, f32>),
    F64(PyReadonlyArray2<'py, f64>),
}

impl Floats<'_> {
    /// The values as the library's row-major matrix: one copy (a memcpy for a C-ordered float32
    /// array), each float64 rounded to the nearest float32 as numpy's `astype` does.
    fn matrix(&self) -> Matrix {
        let (shape, data): (&[usize], Vec<f32>) = match self {
            Floats::F32(a) => (a.shape(), c_order(a)),
            Floats::F64(a) => (a.shape(), a.as_array().iter().map(|&v| v as f32).collect()),
        };
        Matrix::from_vec(shape[0], shape[1], data)
    }
}

/// An array's values in row-major (C) order: a memcpy where its memory is in that order already
/// (numpy's `as_slice` also takes a Fortran-ordered array whole, in its memory order), else one
/// pass in its logical order.
fn c_order<D: numpy::ndarray::Dimension>(a: &numpy::PyReadonlyArray<'_, f32, D>) -> Vec<f32> {
    match (a.is_c_contiguous(), a.as_slice()) {
        (true, Ok(s)) => s.to_vec(),
        _ => a.as_array().iter().copied().collect(),
    }
}

/// The targets as the caller gave them: floats, or integer class indices.
#[derive(FromPyObject)]
enum Targets<'py> {
    Floats(Floats<'py>),
    Classes(PyReadonlyArray1<'py, i64>),
}

/// Everything a run (or a sweep: one job per variant) needs, owned, so that it can run with the
/// GIL released.
struct Request {
    specs: Vec<JobSpec>,
    data: Option<(Matrix, Matrix)>,
    params: Option<Tensors>,
    device: DeviceChoice,
    gpu: GpuOptions,
    tune: TuneMode,
    val_split: Option<f64>,
}

/// What a run gives back (each variant's, in a sweep).
struct Trained {
    /// Every epoch's loss (not thinned: the chunks' losses, collected).
    losses: Vec<f32>,
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    summary: String,
}

/// The job's JSON, read; a value of the wrong type is named by its key (serde names only the
/// position).
fn parse_spec(json: &str) -> Result<JobSpec, PyErr> {
    let whole = match JobSpec::parse(json) {
        Ok(spec) => return Ok(spec),
        Err(e) => e,
    };
    let fields: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(json).map_err(|e| PyValueError::new_err(e.to_string()))?;
    for (key, value) in fields {
        let one = serde_json::json!({ key.clone(): value }).to_string();
        if let Err(e) = JobSpec::parse(&one) {
            let text = e.to_string();
            // serde's own message without its position in a JSON the caller never wrote.
            let text = text.split(" at line ").next().unwrap_or(&text);
            let text = text.strip_prefix("invalid value for job: ").unwrap_or(text);
            if text.contains(&format!("for {key}")) {
                return Err(PyValueError::new_err(text.to_string()));
            }
            return Err(PyValueError::new_err(format!(
                "invalid value for {key}: {text}"
            )));
        }
    }
    Err(to_py(whole))
}

/// The validated job of `spec` and its initial state: on the caller's data or the seeded one,
/// from the caller's parameters if given, with the held-out rows split off.
type Resolved = (Job, HostState, Option<(Matrix, Matrix)>);

fn resolve(spec: &JobSpec, req: &Request) -> gpu_train::Result<Resolved> {
    let (mut job, mut state) = match &req.data {
        Some((x, y)) => {
            let y = data::targets_for(spec.job()?.loss, Path::new("y"), y.clone(), spec.classes())?;
            spec.resolve_with_data(x.clone(), y, ("x".into(), "y".into()))
        }
        None => spec.resolve(),
    }
    .map_err(Error::for_json)?;
    if let Some(tensors) = &req.params {
        let mut tensors = tensors.clone();
        let p = params_from_tensors(&job, &mut tensors, Path::new("params"), FROM_KEYWORDS)?;
        for (name, m) in p.named() {
            data::check_finite(Path::new(&format!("params[{name}]")), m)?;
        }
        (state.weights, state.biases) = (p.weights, p.biases);
    }
    let val = match req.val_split {
        Some(f) => {
            let batch_given = spec.batch.is_some();
            Some(hold_out(&mut job, &mut state, f, batch_given, "val_split")?)
        }
        None => None,
    };
    Ok((job, state, val))
}

/// What the run of `job` gives back: its losses, its parameters, its summary.
fn trained(summary: Summary, job: &Job, report: &Outcome, losses: Vec<f32>) -> Trained {
    Trained {
        losses,
        tensors: named_tensors(job, &report.params),
        summary: serde_json::to_string(&summary).expect("a summary serializes"),
    }
}

fn interrupted_error(epoch: usize) -> Error {
    Error::Interrupted {
        epoch,
        saved: "nothing was returned".into(),
    }
}

/// Train the job; see `gpu_train.train`.
fn run(req: Request, interrupted: &dyn Fn() -> bool) -> gpu_train::Result<Trained> {
    let (job, state, val) = resolve(&req.specs[0], &req)?;
    let setup = Instant::now();
    // Taken out while this run opens its backend (another thread's run meanwhile opens its own).
    let mut kept = KEPT.lock().ok().and_then(|mut k| k.take());
    let tune = (req.tune, 10.0);
    let opened = open_backend_kept(&req.device, req.gpu, tune, &job, &state, &mut kept);
    if let (Some(k), Ok(mut slot)) = (kept, KEPT.lock()) {
        *slot = Some(k);
    }
    let mut backend = opened?;
    let setup_s = setup.elapsed().as_secs_f64();
    let mut monitor = Monitor::new(&job, &state, val);
    let mut losses = Vec::with_capacity(job.epochs);
    let report = block_on(async {
        monitor.measure(backend.as_mut(), 0).await?;
        let mut session = Session::new(&job, backend.as_mut(), 0);
        while let Some(chunk) = session.next_chunk().await? {
            losses.extend_from_slice(&chunk.losses);
            if monitor.due(chunk.done()) {
                monitor.measure(session.backend(), chunk.done()).await?;
            }
            if interrupted() {
                session.stop();
            }
        }
        session.finish().await
    })?;
    if report.stopped {
        return Err(interrupted_error(report.end_epoch()));
    }
    let mut s = Summary::new(backend.describe(), &job, &report, setup_s, backend.stats());
    monitor.fill(&mut s);
    Ok(trained(s, &job, &report, losses))
}

/// Train every variant together; see `gpu_train.sweep`.
/// The variants of `req` trained together: each variant's run, and how the models shared the
/// device ([`gpu_train::sweep::Models::batching`]).
fn run_sweep(
    req: Request,
    interrupted: &dyn Fn() -> bool,
) -> gpu_train::Result<(Vec<Trained>, String)> {
    let mut jobs = Vec::with_capacity(req.specs.len());
    let mut states = Vec::with_capacity(req.specs.len());
    let mut vals = Vec::with_capacity(req.specs.len());
    let available = gpu_train::sweep::available_memory();
    for spec in &req.specs {
        let (job, state, val) = resolve(spec, &req)?;
        if jobs.is_empty() {
            gpu_train::sweep::check_memory(&job, req.specs.len(), available)?;
        }
        jobs.push(job);
        states.push(state);
        vals.push(val);
    }
    let setup = Instant::now();
    let mut models = open_models(&req.device, req.gpu, (req.tune, 10.0), &jobs, &states)?;
    let setup_s = setup.elapsed().as_secs_f64();
    let mut monitors: Vec<Monitor> = (jobs.iter().zip(&states).zip(vals))
        .map(|((j, s), v)| Monitor::new(j, s, v))
        .collect();
    let mut losses: Vec<Vec<f32>> = vec![Vec::new(); jobs.len()];
    let outcomes = block_on(async {
        for (m, k) in monitors.iter_mut().zip(0..) {
            m.measure(models.model(k), 0).await?;
        }
        let mut session = SweepSession::new(&jobs, models.as_mut(), 0);
        while let Some(chunks) = session.next_chunk().await? {
            let done = session.done();
            for (k, chunk) in chunks.iter().enumerate() {
                let Some(chunk) = chunk else { continue };
                losses[k].extend_from_slice(&chunk.losses);
                if session.diverged(k).is_none() && monitors[k].due(done) {
                    monitors[k].measure(session.models().model(k), done).await?;
                }
            }
            if interrupted() {
                session.stop();
            }
        }
        session.finish().await
    })?;
    if let Some(o) = outcomes.iter().find(|o| o.stopped) {
        return Err(interrupted_error(o.end_epoch()));
    }
    let device = models.describe();
    let mut out = Vec::with_capacity(jobs.len());
    for (k, (outcome, losses)) in outcomes.iter().zip(losses).enumerate() {
        // As `gpu-train sweep` writes each variant's summary.
        let stats = models.stats_of(k);
        let mut s = Summary::new(device.clone(), &jobs[k], outcome, setup_s, stats);
        monitors[k].fill(&mut s);
        out.push(trained(s, &jobs[k], outcome, losses));
    }
    Ok((out, models.batching()))
}

/// Tensors by name from a list of (name, array) pairs.
fn tensors(pairs: Vec<(String, PyReadonlyArrayDyn<'_, f32>)>) -> Tensors {
    pairs
        .into_iter()
        .map(|(name, a)| (name, (a.shape().to_vec(), c_order(&a))))
        .collect()
}

type Returned<'py> = (
    Bound<'py, PyArray1<f32>>,
    Vec<(String, Bound<'py, PyArrayDyn<f32>>)>,
    String,
);

/// The tensors as numpy arrays of their shapes.
fn arrays(
    py: Python<'_>,
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
) -> PyResult<Vec<(String, Bound<'_, PyArrayDyn<f32>>)>> {
    tensors
        .into_iter()
        .map(|(name, shape, values)| {
            let a = PyArray1::from_vec(py, values).reshape(shape)?;
            Ok((name, a))
        })
        .collect()
}

fn layout(s: &str) -> PyResult<Option<Layout>> {
    match s {
        "auto" => Ok(None),
        "texels" => Ok(Some(Layout::Texels)),
        "buffer" => Ok(Some(Layout::Buffer)),
        _ => Err(PyValueError::new_err(format!(
            "invalid value for layout: `{s}` (auto, texels or buffer)"
        ))),
    }
}

fn tune_mode(s: &str) -> PyResult<TuneMode> {
    match s {
        "auto" => Ok(TuneMode::Auto),
        "always" => Ok(TuneMode::Always),
        "never" => Ok(TuneMode::Never),
        _ => Err(PyValueError::new_err(format!(
            "invalid value for tune: `{s}` (auto, always or never)"
        ))),
    }
}

fn device(s: &str) -> PyResult<DeviceChoice> {
    DeviceChoice::parse(s).map_err(to_py)
}

/// The request of `train` or `sweep`: the jobs' JSON (one per variant), the arrays copied into
/// the library's matrices, the run's options parsed.
#[allow(clippy::too_many_arguments)]
fn request<'py>(
    specs: &[String],
    x: Option<Floats<'py>>,
    y: Option<Targets<'py>>,
    params: Option<Vec<(String, PyReadonlyArrayDyn<'py, f32>)>>,
    device: &str,
    layout_name: &str,
    tune: &str,
    val_split: Option<f64>,
) -> PyResult<Request> {
    let specs = specs
        .iter()
        .map(|s| parse_spec(s))
        .collect::<PyResult<Vec<JobSpec>>>()?;
    let Some(first) = specs.first() else {
        return Err(PyValueError::new_err("no job to run"));
    };
    let data = match (x, y) {
        (None, None) => None,
        (Some(x), Some(y)) => {
            let y = match y {
                Targets::Floats(f) => f.matrix(),
                Targets::Classes(c) => {
                    let labels = c.as_array().to_vec();
                    npy::one_hot_indices(Path::new("y"), &labels, &[labels.len()], first.classes())
                        .map_err(to_py)?
                }
            };
            let x = x.matrix();
            // Once for every variant of a sweep.
            data::check_finite(Path::new("x"), &x).map_err(to_py)?;
            data::check_finite(Path::new("y"), &y).map_err(to_py)?;
            Some((x, y))
        }
        _ => {
            return Err(PyValueError::new_err(
                "give both x and y (the inputs and the targets), or neither (the seeded data)",
            ))
        }
    };
    Ok(Request {
        specs,
        data,
        params: params.map(tensors),
        device: self::device(device)?,
        gpu: GpuOptions {
            layout: layout(layout_name)?,
            limits: Default::default(),
        },
        tune: tune_mode(tune)?,
        val_split,
    })
}

/// Whether Ctrl-C was pressed: the GIL is released while training, and taken back between chunks
/// for a moment to ask (the signal handler only sets a flag that Python code reads).
fn interrupted() -> bool {
    Python::attach(|py| py.check_signals().is_err())
}

fn returned(py: Python<'_>, t: Trained) -> PyResult<Returned<'_>> {
    let losses = PyArray1::from_vec(py, t.losses);
    Ok((losses, arrays(py, t.tensors)?, t.summary))
}

/// `train(spec, x, y, params, device, layout, tune, val_split)` -> (losses, params, summary JSON).
#[pyfunction]
#[pyo3(signature = (spec, x, y, params, device, layout_name, tune, val_split))]
#[allow(clippy::too_many_arguments)]
fn train<'py>(
    py: Python<'py>,
    spec: String,
    x: Option<Floats<'py>>,
    y: Option<Targets<'py>>,
    params: Option<Vec<(String, PyReadonlyArrayDyn<'py, f32>)>>,
    device: &str,
    layout_name: &str,
    tune: &str,
    val_split: Option<f64>,
) -> PyResult<Returned<'py>> {
    let req = request(&[spec], x, y, params, device, layout_name, tune, val_split)?;
    let t = py.detach(|| run(req, &interrupted)).map_err(to_py)?;
    returned(py, t)
}

/// `sweep(specs, x, y, params, device, layout, tune, val_split)`: every variant's job (one JSON
/// each) trained together as `gpu-train sweep` trains them -> (one (losses, params, summary
/// JSON) per variant, how the models shared the device).
#[pyfunction]
#[pyo3(signature = (specs, x, y, params, device, layout_name, tune, val_split))]
#[allow(clippy::too_many_arguments)]
fn sweep<'py>(
    py: Python<'py>,
    specs: Vec<String>,
    x: Option<Floats<'py>>,
    y: Option<Targets<'py>>,
    params: Option<Vec<(String, PyReadonlyArrayDyn<'py, f32>)>>,
    device: &str,
    layout_name: &str,
    tune: &str,
    val_split: Option<f64>,
) -> PyResult<(Vec<Returned<'py>>, String)> {
    let req = request(&specs, x, y, params, device, layout_name, tune, val_split)?;
    let (all, batching) = py.detach(|| run_sweep(req, &interrupted)).map_err(to_py)?;
    let all = all
        .into_iter()
        .map(|t| returned(py, t))
        .collect::<PyResult<_>>()?;
    Ok((all, batching))
}

/// `predict(config, params, x, proba)`: the net's outputs for the rows of `x`, by the library's
/// forward pass (the CPU reference, as `gpu-train predict`); `proba`: their softmax.
#[pyfunction]
fn predict<'py>(
    py: Python<'py>,
    config: &str,
    params: Vec<(String, PyReadonlyArrayDyn<'py, f32>)>,
    x: Floats<'py>,
    proba: bool,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let job = parse_spec(config)?.job().map_err(to_py)?;
    let mut t = tensors(params);
    let p: Params =
        params_from_tensors(&job, &mut t, Path::new("params"), FROM_KEYWORDS).map_err(to_py)?;
    let x = x.matrix();
    if x.cols != job.layers[0] {
        return Err(PyValueError::new_err(format!(
            "x has {} columns per row; the net has {} inputs",
            x.cols, job.layers[0]
        )));
    }
    data::check_finite(Path::new("x"), &x).map_err(to_py)?;
    let out = py.detach(|| {
        let out = gpu_train::eval::predict(&job, &p, &x);
        match proba {
            true => gpu_train::eval::softmax_rows(&out),
            false => out,
        }
    });
    PyArray1::from_vec(py, out.data).reshape(vec![out.rows, out.cols])
}

/// `devices()`: JSON list of the adapters as `gpu-train devices` lists them, then the CPU path,
/// each with the `device` string that picks it (`select`) and whether `auto` would.
#[pyfunction]
fn devices(py: Python<'_>) -> PyResult<String> {
    py.detach(|| {
        let list = adapters::list_adapters();
        let auto = adapters::choose(&DeviceChoice::Auto, adapters::list_adapters())
            .ok()
            .flatten()
            .map(|e| e.index);
        let mut out: Vec<serde_json::Value> = list
            .iter()
            .map(|e| {
                let d = adapters::describe(&e.info);
                let mut v = serde_json::to_value(&d).expect("a device serializes");
                v["select"] = e.index.to_string().into();
                v["index"] = e.index.into();
                v["compute"] = e.compute.into();
                v["auto"] = (auto == Some(e.index)).into();
                v
            })
            .collect();
        let mut cpu = serde_json::to_value(gpu_train::cpu::describe()).expect("serializes");
        cpu["select"] = "cpu".into();
        cpu["compute"] = true.into();
        cpu["auto"] = auto.is_none().into();
        out.push(cpu);
        Ok(serde_json::Value::Array(out).to_string())
    })
}

/// `verify(device, quick, layout)`: the report of `gpu-train verify` as JSON.
#[pyfunction]
fn verify(py: Python<'_>, device: &str, quick: bool, layout_name: &str) -> PyResult<String> {
    let options = gpu_train::verify::Options {
        devices: vec![self::device(device)?],
        layout: layout(layout_name)?,
        quick,
        ..Default::default()
    };
    let report = py
        .detach(|| gpu_train::verify::run(&options, &mut |_, _| {}))
        .map_err(to_py)?;
    Ok(serde_json::to_string(&report).expect("a report serializes"))
}

/// `kept_device()`: the name of the GPU adapter kept open for the next run, or None.
#[pyfunction]
fn kept_device() -> Option<String> {
    let kept = KEPT.lock().ok()?;
    kept.as_ref().map(|k| k.name().to_string())
}

/// `release_device()`: close the kept GPU device (the next GPU run opens it again).
#[pyfunction]
fn release_device() {
    if let Ok(mut k) = KEPT.lock() {
        *k = None;
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    m.add_function(wrap_pyfunction!(sweep, m)?)?;
    m.add_function(wrap_pyfunction!(predict, m)?)?;
    m.add_function(wrap_pyfunction!(devices, m)?)?;
    m.add_function(wrap_pyfunction!(verify, m)?)?;
    m.add_function(wrap_pyfunction!(kept_device, m)?)?;
    m.add_function(wrap_pyfunction!(release_device, m)?)?;
    Ok(())
}
