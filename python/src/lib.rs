//! `gpu_train._native`: the library under the Python package (python/gpu_train). Each function
//! is a few calls into the library, as the command line's commands are: the job from its JSON
//! ([`JobSpec`], the summary's `config` names), the arrays handed over with one copy into the
//! library's matrices, the run driven chunk by chunk by a [`Session`] with the GIL released, and
//! the results handed back as numpy arrays and JSON. Nothing here computes anything the library
//! does not.

use gpu_train::app::{open_backend_kept, KeptDevice};
use gpu_train::error::Error;
use gpu_train::gpu::adapters::{self, DeviceChoice};
use gpu_train::gpu::layout::Layout;
use gpu_train::gpu::tune::TuneMode;
use gpu_train::gpu::GpuOptions;
use gpu_train::init::{Matrix, Params};
use gpu_train::io::checkpoint::{named_tensors, params_from_tensors, Tensors};
use gpu_train::io::{data, npy, summary::Summary};
use gpu_train::monitor::Monitor;
use gpu_train::spec::JobSpec;
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

/// Everything a run needs, owned, so that it can run with the GIL released.
struct Request {
    spec: JobSpec,
    /// Whether `batch` was given (a held-out split then keeps it).
    batch_given: bool,
    data: Option<(Matrix, Matrix)>,
    params: Option<Tensors>,
    device: DeviceChoice,
    gpu: GpuOptions,
    tune: TuneMode,
    val_split: Option<f64>,
}

/// What a run gives back.
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

/// Train the job; see `gpu_train.train`.
fn run(req: Request, interrupted: &dyn Fn() -> bool) -> gpu_train::Result<Trained> {
    let Request {
        spec,
        batch_given,
        data,
        params,
        device,
        gpu,
        tune,
        val_split,
    } = req;
    let (mut job, mut state) = match data {
        Some((x, y)) => {
            data::check_finite(Path::new("x"), &x)?;
            data::check_finite(Path::new("y"), &y)?;
            let y = data::targets_for(spec.job()?.loss, Path::new("y"), y, spec.classes())?;
            spec.resolve_with_data(x, y, ("x".into(), "y".into()))
        }
        None => spec.resolve(),
    }
    .map_err(Error::for_json)?;
    if let Some(mut tensors) = params {
        let from = "layers, bias and activation";
        let p = params_from_tensors(&job, &mut tensors, Path::new("params"), from)?;
        for (name, m) in p.named() {
            data::check_finite(Path::new(&format!("params[{name}]")), m)?;
        }
        (state.weights, state.biases) = (p.weights, p.biases);
    }
    let val = match val_split {
        Some(f) => Some(gpu_train::eval::hold_out(
            &mut job,
            &mut state,
            f,
            batch_given,
            "val_split",
        )?),
        None => None,
    };
    let (job, state) = (job, state);
    let setup = Instant::now();
    // Taken out while this run opens its backend (another thread's run meanwhile opens its own).
    let mut kept = KEPT.lock().ok().and_then(|mut k| k.take());
    let opened = open_backend_kept(&device, gpu, (tune, 10.0), &job, &state, &mut kept);
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
        return Err(Error::Interrupted {
            epoch: report.end_epoch(),
            saved: "nothing was returned".into(),
        });
    }
    let mut s = Summary::new(backend.describe(), &job, &report, setup_s, backend.stats());
    monitor.fill(&mut s);
    Ok(Trained {
        losses,
        tensors: named_tensors(&job, &report.params),
        summary: serde_json::to_string(&s).expect("a summary serializes"),
    })
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

fn device(s: &str) -> PyResult<DeviceChoice> {
    DeviceChoice::parse(s).map_err(to_py)
}

/// `train(spec, x, y, params, device, layout, tune, val_split)` -> (losses, params, summary JSON).
#[pyfunction]
#[pyo3(signature = (spec, x, y, params, device, layout_name, tune, val_split))]
#[allow(clippy::too_many_arguments)]
fn train<'py>(
    py: Python<'py>,
    spec: &str,
    x: Option<Floats<'py>>,
    y: Option<Targets<'py>>,
    params: Option<Vec<(String, PyReadonlyArrayDyn<'py, f32>)>>,
    device: &str,
    layout_name: &str,
    tune: &str,
    val_split: Option<f64>,
) -> PyResult<Returned<'py>> {
    let parsed = parse_spec(spec)?;
    let data = match (x, y) {
        (None, None) => None,
        (Some(x), Some(y)) => {
            let y = match y {
                Targets::Floats(f) => f.matrix(),
                Targets::Classes(c) => {
                    let labels = c.as_array().to_vec();
                    npy::one_hot_indices(Path::new("y"), &labels, &[labels.len()], parsed.classes())
                        .map_err(to_py)?
                }
            };
            Some((x.matrix(), y))
        }
        _ => {
            return Err(PyValueError::new_err(
                "give both x and y (the inputs and the targets), or neither (the seeded data)",
            ))
        }
    };
    let tune = match tune {
        "auto" => TuneMode::Auto,
        "always" => TuneMode::Always,
        "never" => TuneMode::Never,
        _ => {
            return Err(PyValueError::new_err(format!(
                "invalid value for tune: `{tune}` (auto, always or never)"
            )))
        }
    };
    let req = Request {
        batch_given: parsed.batch.is_some(),
        spec: parsed,
        data,
        params: params.map(tensors),
        device: self::device(device)?,
        gpu: GpuOptions {
            layout: layout(layout_name)?,
            limits: Default::default(),
        },
        tune,
        val_split,
    };
    // The GIL is released while training; between chunks it is taken back for a moment to see
    // whether Ctrl-C was pressed (the signal handler only sets a flag that Python code reads).
    let interrupted = || Python::attach(|py| py.check_signals().is_err());
    let trained = py.detach(|| run(req, &interrupted)).map_err(to_py)?;
    let losses = PyArray1::from_vec(py, trained.losses);
    Ok((losses, arrays(py, trained.tensors)?, trained.summary))
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
    let from = "layers, bias and activation";
    let p: Params = params_from_tensors(&job, &mut t, Path::new("params"), from).map_err(to_py)?;
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
    m.add_function(wrap_pyfunction!(predict, m)?)?;
    m.add_function(wrap_pyfunction!(devices, m)?)?;
    m.add_function(wrap_pyfunction!(verify, m)?)?;
    m.add_function(wrap_pyfunction!(kept_device, m)?)?;
    m.add_function(wrap_pyfunction!(release_device, m)?)?;
    Ok(())
}
