//! Checkpoints in safetensors. The model file holds the weights and biases under the names and
//! layouts of PyTorch's `state_dict` (`nn.Sequential` of `nn.Linear` and `nn.ReLU`: "0.weight"
//! `[out, in]`, "0.bias", "2.weight", ...; the tutorial's `DynamicNet` names, "input_linear.weight"
//! ..., for a dynamic-depth net of three layers), so that
//! `model.load_state_dict(safetensors.torch.load_file(F))` works as it is; its metadata records the
//! format, the tool's version, the job's configuration (JSON), the epoch and step, and the
//! optimizer's step counters (exact bits). The optimizer's per-element state (PyTorch's
//! `momentum_buffer`, `exp_avg`, `exp_avg_sq`) cannot share that file (a strict `load_state_dict`
//! refuses unknown keys), so it goes to a second file beside it, `NAME.optim.safetensors`, written
//! first. Each file is written atomically, and each save gives the pair a fresh `generation` in
//! both files' metadata. Before the new optimizer file replaces the old one, the old one (when it
//! is of the model file's save) is hard-linked as `.NAME.optim.prev.safetensors`, removed once
//! the model file is in place: a run killed between the two renames leaves the previous
//! checkpoint whole, the model file with that `prev` file, which [`load`] pairs by generation.

use crate::backend::TrainState;
use crate::error::{Error, Result};
use crate::init::{Matrix, Params};
use crate::job::{Activation, Job, Named, OptimizerKind};
use crate::state::OptCounters;
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The `format` metadata of a model file written here.
pub const FORMAT: &str = "gpu-train checkpoint 1";

/// The PyTorch name of layer `l`'s module: its index in `nn.Sequential` (Linear, ReLU, Linear ...
/// or consecutive without activation), or `DynamicNet`'s attribute.
pub fn module_name(job: &Job, l: usize) -> String {
    if job.dynamic.is_some() && job.depth() == 3 {
        return ["input_linear", "middle_linear", "output_linear"][l].to_string();
    }
    match job.activation {
        Activation::None => l.to_string(),
        _ => (2 * l).to_string(),
    }
}

/// The optimizer-state file beside a model file: `run.safetensors` -> `run.optim.safetensors`.
pub fn optimizer_path(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    path.with_file_name(format!("{stem}.optim.safetensors"))
}

/// The names PyTorch gives the optimizer's state buffers.
fn state_names(kind: OptimizerKind) -> &'static [&'static str] {
    match kind {
        OptimizerKind::Sgd => &[],
        OptimizerKind::Momentum => &["momentum_buffer"],
        OptimizerKind::Adam | OptimizerKind::AdamW => &["exp_avg", "exp_avg_sq"],
    }
}

/// Every parameter tensor: (PyTorch name, our matrix). Weights are transposed to `[out, in]`.
fn named_tensors(job: &Job, params: &Params) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut out = Vec::new();
    for (l, w) in params.weights.iter().enumerate() {
        let m = module_name(job, l);
        out.push((format!("{m}.weight"), vec![w.cols, w.rows], transpose(w)));
        if let Some(b) = params.biases.get(l) {
            out.push((format!("{m}.bias"), vec![b.cols], b.data.clone()));
        }
    }
    out
}

fn transpose(m: &Matrix) -> Vec<f32> {
    let mut t = vec![0.0; m.data.len()];
    for r in 0..m.rows {
        for c in 0..m.cols {
            t[c * m.rows + r] = m.data[r * m.cols + c];
        }
    }
    t
}

fn counters_text(c: &OptCounters) -> String {
    format!("{},{},{}", c.t, c.beta1_t.to_bits(), c.beta2_t.to_bits())
}

fn parse_counters(s: &str) -> Option<OptCounters> {
    let v: Vec<u32> = s
        .split(',')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    match v[..] {
        [t, b1, b2] => Some(OptCounters {
            t,
            beta1_t: f32::from_bits(b1),
            beta2_t: f32::from_bits(b2),
        }),
        _ => None,
    }
}

/// One safetensors file's bytes (`path` names it in errors).
fn file_bytes(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    meta: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            TensorView::new(Dtype::F32, shape.clone(), b).map(|v| (name.clone(), v))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::io(path, std::io::Error::other(e)))?;
    let data = safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::io(path, std::io::Error::other(e)))?;
    Ok(data)
}

/// Write the checkpoint of `job` at `state` (after `epoch` epochs) to `path`, and its optimizer
/// state beside it when the optimizer keeps any.
pub fn save(path: &Path, job: &Job, state: &TrainState, epoch: usize) -> Result<()> {
    let mut meta = model_meta(path, job, state, epoch)?;
    let names = state_names(job.optimizer.kind);
    if !names.is_empty() {
        let params = named_tensors(job, &state.params);
        let mut tensors = Vec::new();
        for ((name, shape, _), bufs) in params.iter().zip(tensor_order(job, &state.opt_state)) {
            for (buf_name, m) in names.iter().zip(bufs) {
                let data = if shape.len() == 2 {
                    transpose(m)
                } else {
                    m.data.clone()
                };
                tensors.push((format!("{name}.{buf_name}"), shape.clone(), data));
            }
        }
        let opt_path = optimizer_path(path);
        let file = opt_path
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into());
        meta.insert("optimizer_file".into(), file);
        let opt_meta = HashMap::from([
            ("format".to_string(), OPTIMIZER_FORMAT.to_string()),
            ("step".into(), state.step.to_string()),
            ("generation".into(), meta["generation"].clone()),
        ]);
        keep_previous(path)?;
        write_file(&opt_path, &tensors, opt_meta)?;
    }
    write_file(path, &named_tensors(job, &state.params), meta)?;
    // The previous optimizer file is no longer needed; with no optimizer state, neither is an
    // earlier run's optimizer file beside this one.
    let _ = std::fs::remove_file(previous_path(path));
    if names.is_empty() {
        let _ = std::fs::remove_file(optimizer_path(path));
    }
    Ok(())
}

/// Write one safetensors file atomically.
fn write_file(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    meta: HashMap<String, String>,
) -> Result<()> {
    let data = file_bytes(path, tensors, meta)?;
    super::atomic_write(path, |w| w.write_all(&data))
}

/// The model file of [`save`] as bytes (`name` names it in errors): the weights and biases in
/// PyTorch's layout with the job and the counters, what the CLI's `--resume`, `eval` and
/// `predict` and PyTorch's `safetensors.torch.load_file` read. Without the optimizer's state (a
/// second file): a resumed Adam or momentum run starts that state afresh.
pub fn model_bytes(name: &Path, job: &Job, state: &TrainState, epoch: usize) -> Result<Vec<u8>> {
    let meta = model_meta(name, job, state, epoch)?;
    file_bytes(name, &named_tensors(job, &state.params), meta)
}

/// The model file's metadata.
fn model_meta(
    path: &Path,
    job: &Job,
    state: &TrainState,
    epoch: usize,
) -> Result<HashMap<String, String>> {
    let config =
        serde_json::to_string(job).map_err(|e| Error::io(path, std::io::Error::other(e)))?;
    Ok(HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("gpu_train_version".into(), env!("CARGO_PKG_VERSION").into()),
        ("config".into(), config),
        ("epoch".into(), epoch.to_string()),
        ("step".into(), state.step.to_string()),
        ("optimizer".into(), job.optimizer.kind.name()),
        ("counters".into(), counters_text(&state.counters)),
        ("generation".into(), fresh_generation()),
        (
            "shared_counters".into(),
            counters_text(&state.shared_counters),
        ),
    ]))
}

/// The previous optimizer file kept while a save is under way: `.NAME.optim.prev.safetensors`.
pub fn previous_path(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    path.with_file_name(format!(".{stem}.optim.prev.safetensors"))
}

/// Before a save replaces the optimizer file: hard-link it as the previous one, if it is of the
/// model file's save (if it is not, an earlier save was cut short and the previous file there
/// already is the model file's: it stays).
fn keep_previous(path: &Path) -> Result<()> {
    let (opt, prev) = (optimizer_path(path), previous_path(path));
    let generation = |p: &Path| header_metadata(p).and_then(|m| m.get("generation").cloned());
    let model = generation(path);
    if model.is_none() || generation(&opt) != model {
        return Ok(());
    }
    let _ = std::fs::remove_file(&prev);
    if std::fs::hard_link(&opt, &prev).is_err() {
        // A filesystem without hard links: a copy, written atomically.
        let bytes = std::fs::read(&opt).map_err(|e| Error::io(&opt, e))?;
        super::atomic_write(&prev, |w| w.write_all(&bytes))?;
    }
    Ok(())
}

/// The metadata of a safetensors file from its header alone (not its tensors), if it has one.
fn header_metadata(path: &Path) -> Option<HashMap<String, String>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).ok()?;
    let len = usize::try_from(u64::from_le_bytes(len))
        .ok()?
        .min(100 << 20);
    let mut header = vec![0u8; len];
    f.read_exact(&mut header).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&header).ok()?;
    serde_json::from_value(v.get("__metadata__")?.clone()).ok()
}

/// The `format` metadata of an optimizer-state file.
const OPTIMIZER_FORMAT: &str = "gpu-train checkpoint 1 optimizer state";

/// A value that no other save has given a pair of files (a random 64-bit number).
fn fresh_generation() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        web_time::SystemTime::now()
            .duration_since(web_time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    #[cfg(not(target_arch = "wasm32"))]
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// Whether an optimizer file's metadata belongs with a model file's: the same generation, or,
/// in files from before generations, the same step.
fn same_save(model: &HashMap<String, String>, opt: &HashMap<String, String>) -> bool {
    match (model.get("generation"), opt.get("generation")) {
        (Some(a), Some(b)) => a == b,
        (None, None) => model.get("step") == opt.get("step"),
        _ => false,
    }
}

/// `opt_state` (weights, then biases) in the interleaved order of [`named_tensors`].
fn tensor_order<'a>(job: &Job, opt_state: &'a [Vec<Matrix>]) -> Vec<&'a [Matrix]> {
    let depth = job.depth();
    let with_bias = opt_state.len() > depth;
    let mut out = Vec::new();
    for l in 0..depth {
        out.push(&opt_state[l][..]);
        if with_bias {
            out.push(&opt_state[depth + l][..]);
        }
    }
    out
}

fn bad(path: &Path, msg: String) -> Error {
    Error::BadFile {
        path: path.to_path_buf(),
        msg,
    }
}

/// Tensors by name: shape and values.
type Tensors = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// A safetensors file read: its tensors (as f32) and metadata.
type Parsed = (Tensors, HashMap<String, String>);

/// Read a safetensors file: its tensors (as f32) and metadata.
fn read_file(path: &Path) -> Result<Parsed> {
    let bytes = std::fs::read(path).map_err(|e| bad(path, format!("cannot read: {e}")))?;
    parse_file(path, &bytes)
}

/// [`read_file`] of a file's bytes (`path` names it in errors).
fn parse_file(path: &Path, bytes: &[u8]) -> Result<Parsed> {
    let corrupt = |e: safetensors::SafeTensorError| {
        bad(
            path,
            format!("not a valid safetensors file (truncated or corrupt?): {e}"),
        )
    };
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(corrupt)?;
    let meta = header.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(bytes).map_err(corrupt)?;
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F64 => view
                .data()
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
                .collect(),
            other => {
                return Err(bad(
                    path,
                    format!("tensor `{name}` is {other:?}; expected F32 or F64"),
                ))
            }
        };
        tensors.insert(name, (view.shape().to_vec(), data));
    }
    Ok((tensors, meta))
}

/// Load the checkpoint at `path` for `job`: every tensor the job's net has, with its shape
/// (errors name the tensor), the optimizer's state from the file beside it, the step and the
/// counters. Returns the state and the epoch it was written at.
pub fn load(path: &Path, job: &Job) -> Result<(TrainState, usize)> {
    let model = read_file(path)?;
    check_format(path, &model.1)?;
    let opt = match state_names(job.optimizer.kind) {
        [] => None,
        _ => {
            let opt_path = optimizer_path(path);
            let mut opt = read_file(&opt_path)?;
            // A save cut between its two renames: the previous optimizer file is the model's.
            let prev = previous_path(path);
            if !same_save(&model.1, &opt.1) && prev.exists() {
                let kept = read_file(&prev)?;
                if same_save(&model.1, &kept.1) {
                    log::warn!(
                        "{} is of a save that stopped before its model file was written; \
                         continuing from the previous save, {} with {}",
                        opt_path.display(),
                        path.display(),
                        prev.display()
                    );
                    opt = kept;
                }
            }
            Some((opt_path, opt))
        }
    };
    load_parsed(path, model, opt, job)
}

/// [`load`] of a checkpoint to continue training `job` from: its epochs must count steps of the
/// job's batches, and fewer than the job's epochs.
pub fn resume(path: &Path, job: &Job) -> Result<(TrainState, usize)> {
    let (state, epoch) = load(path, job)?;
    if epoch.checked_mul(job.steps_per_epoch()) != Some(state.step) {
        return Err(Error::arg(
            "--batch",
            format!(
                "{} is at epoch {epoch}, step {}: trained with other batches than {} steps per \
                 epoch; resume it with the --batch and dataset it was trained with",
                path.display(),
                state.step,
                job.steps_per_epoch()
            ),
        ));
    }
    if epoch >= job.epochs {
        return Err(Error::arg(
            "--epochs",
            format!(
                "{} has already trained {epoch} epochs; raise --epochs to continue",
                path.display()
            ),
        ));
    }
    Ok((state, epoch))
}

/// [`load`] of a checkpoint's bytes: the model file's and, for an optimizer that keeps state,
/// the optimizer file's (`path` names the model file in errors).
pub fn parse(
    path: &Path,
    model: &[u8],
    optimizer: Option<&[u8]>,
    job: &Job,
) -> Result<(TrainState, usize)> {
    let model = parse_file(path, model)?;
    check_format(path, &model.1)?;
    let opt_path = optimizer_path(path);
    let opt = match (state_names(job.optimizer.kind), optimizer) {
        ([], _) => None,
        (_, Some(bytes)) => Some((opt_path.clone(), parse_file(&opt_path, bytes)?)),
        (_, None) => return Err(bad(&opt_path, "cannot read: it is missing".into())),
    };
    load_parsed(path, model, opt, job)
}

fn check_format(path: &Path, meta: &HashMap<String, String>) -> Result<()> {
    if meta.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(bad(
            path,
            format!(
                "not a gpu-train checkpoint (metadata format {:?}, expected {FORMAT:?})",
                meta.get("format")
            ),
        ));
    }
    Ok(())
}

/// The state in a model file and its optimizer file, read.
fn load_parsed(
    path: &Path,
    model: Parsed,
    opt: Option<(PathBuf, Parsed)>,
    job: &Job,
) -> Result<(TrainState, usize)> {
    let names = state_names(job.optimizer.kind);
    let (mut tensors, meta) = model;
    let mut opt = opt.map(|(path, (tensors, meta))| (path, tensors, meta));
    let number = |key: &str| -> Result<usize> {
        meta.get(key)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| bad(path, format!("metadata `{key}` is missing or not a number")))
    };
    let (epoch, step) = (number("epoch")?, number("step")?);
    let counters = |key: &str| {
        meta.get(key)
            .and_then(|v| parse_counters(v))
            .ok_or_else(|| bad(path, format!("metadata `{key}` is missing or malformed")))
    };
    // The net's functions must be those it was trained with (a schedule, a rate or a decay may
    // change on resume, as in PyTorch; an activation or a loss swapped in would silently train
    // another net).
    let config: Option<serde_json::Value> = meta
        .get("config")
        .and_then(|c| serde_json::from_str(c).ok());
    for (flag, key, now) in [
        ("--activation", "activation", job.activation.to_string()),
        ("--loss", "loss", job.loss.name()),
    ] {
        let saved = config.as_ref().and_then(|c| c[key].as_str());
        if let Some(saved) = saved.filter(|s| *s != now) {
            return Err(Error::arg(
                flag,
                format!(
                    "{} was trained with `{saved}`, not `{now}`; resume it with the same {key}",
                    path.display()
                ),
            ));
        }
    }
    let saved_opt = meta.get("optimizer").cloned().unwrap_or_default();
    if saved_opt != job.optimizer.kind.name() {
        return Err(Error::arg(
            "--optimizer",
            format!(
                "{} was trained with `{saved_opt}`; resume it with the same optimizer",
                path.display()
            ),
        ));
    }
    let take =
        |tensors: &mut Tensors, file: &Path, name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let (found, data) = tensors.remove(name).ok_or_else(|| {
                bad(
                    file,
                    format!("has no tensor `{name}`, which the net of the flags needs"),
                )
            })?;
            if found != shape {
                return Err(Error::Shape {
                    path: file.to_path_buf(),
                    expected: shape.to_vec(),
                    found,
                    hint: format!(" (tensor `{name}`, from --layers and --bias)"),
                });
            }
            Ok(data)
        };
    let d = &job.layers;
    let mut params = Params {
        weights: Vec::new(),
        biases: Vec::new(),
    };
    for l in 0..job.depth() {
        let m = module_name(job, l);
        let w = take(
            &mut tensors,
            path,
            &format!("{m}.weight"),
            &[d[l + 1], d[l]],
        )?;
        let wt = Matrix::from_vec(d[l + 1], d[l], w);
        params
            .weights
            .push(Matrix::from_vec(d[l], d[l + 1], transpose(&wt)));
        if job.bias {
            let b = take(&mut tensors, path, &format!("{m}.bias"), &[d[l + 1]])?;
            params.biases.push(Matrix::from_vec(1, d[l + 1], b));
        }
    }
    if let Some(extra) = tensors.keys().min() {
        return Err(bad(
            path,
            format!("has a tensor `{extra}` the net of the flags does not (check --layers, --bias and --activation)"),
        ));
    }
    // The optimizer's state, per tensor in our order (weights, then biases).
    let n_tensors = params.weights.len() + params.biases.len();
    let mut opt_state = vec![Vec::new(); n_tensors];
    if let Some((opt_path, opt, opt_meta)) = &mut opt {
        let opt_path = &*opt_path;
        if !same_save(&meta, opt_meta) {
            return Err(bad(
                opt_path,
                format!(
                    "is the optimizer state of another save (step {:?}), not of {} (step {step})",
                    opt_meta.get("step"),
                    path.display()
                ),
            ));
        }
        let depth = job.depth();
        for (i, slot) in opt_state.iter_mut().enumerate() {
            let (l, is_bias) = if i < depth {
                (i, false)
            } else {
                (i - depth, true)
            };
            let m = module_name(job, l);
            for buf in names {
                let m = if is_bias {
                    let v = take(opt, opt_path, &format!("{m}.bias.{buf}"), &[d[l + 1]])?;
                    Matrix::from_vec(1, d[l + 1], v)
                } else {
                    let name = format!("{m}.weight.{buf}");
                    let v = take(opt, opt_path, &name, &[d[l + 1], d[l]])?;
                    Matrix::from_vec(
                        d[l],
                        d[l + 1],
                        transpose(&Matrix::from_vec(d[l + 1], d[l], v)),
                    )
                };
                slot.push(m);
            }
        }
    }
    Ok((
        TrainState {
            params,
            opt_state,
            step,
            counters: counters("counters")?,
            shared_counters: counters("shared_counters")?,
        },
        epoch,
    ))
}

/// The net a checkpoint was trained as (widths, activation, biases, loss, optimizer, dynamic
/// depth), from the configuration in its metadata: what `gpu-train eval` and `predict` need.
pub fn job_of(path: &Path) -> Result<Job> {
    job_from(path, read_file(path)?.1)
}

/// [`job_of`] a model file's bytes (`path` names it in errors).
pub fn parse_job(path: &Path, bytes: &[u8]) -> Result<Job> {
    job_from(path, parse_file(path, bytes)?.1)
}

fn job_from(path: &Path, meta: HashMap<String, String>) -> Result<Job> {
    if meta.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(bad(
            path,
            "not a gpu-train checkpoint (no gpu-train metadata)".into(),
        ));
    }
    let config: serde_json::Value = meta
        .get("config")
        .and_then(|c| serde_json::from_str(c).ok())
        .ok_or_else(|| bad(path, "metadata `config` is missing or not JSON".into()))?;
    let broken = |what: &str| bad(path, format!("metadata `config` has no valid `{what}`"));
    let layers: Vec<usize> =
        serde_json::from_value(config["layers"].clone()).map_err(|_| broken("layers"))?;
    let name = |key: &str| config[key].as_str().ok_or_else(|| broken(key));
    let mut job = Job {
        layers,
        activation: Activation::parse(name("activation")?).map_err(|_| broken("activation"))?,
        loss: crate::job::Loss::parse(name("loss")?).map_err(|_| broken("loss"))?,
        bias: config["bias"].as_bool().ok_or_else(|| broken("bias"))?,
        ..Job::default()
    };
    let kind = config["optimizer"]["kind"]
        .as_str()
        .ok_or_else(|| broken("optimizer"))?;
    job.optimizer.kind = OptimizerKind::parse(kind).map_err(|_| broken("optimizer"))?;
    if let Some(max) = config["dynamic"]["max"].as_u64() {
        job.dynamic = Some(crate::job::DynamicDepth {
            max: max as usize,
            schedule: Vec::new(),
        });
    }
    if job.layers.len() < 2 || job.layers.contains(&0) {
        return Err(broken("layers"));
    }
    Ok(job)
}
