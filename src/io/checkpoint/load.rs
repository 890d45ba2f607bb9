//! Reading a checkpoint: parsing either file, pairing them by generation (the previous optimizer
//! file after a kill between the renames), checking them against the job, and the job a
//! checkpoint holds.

use super::*;

/// The metadata of a safetensors file from its header alone (not its tensors), if it has one.
pub(super) fn header_metadata(path: &Path) -> Option<HashMap<String, String>> {
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

/// Whether an optimizer file's metadata belongs with a model file's: the same generation, or,
/// in files from before generations, the same step.
pub(super) fn same_save(model: &HashMap<String, String>, opt: &HashMap<String, String>) -> bool {
    match (model.get("generation"), opt.get("generation")) {
        (Some(a), Some(b)) => a == b,
        (None, None) => model.get("step") == opt.get("step"),
        _ => false,
    }
}

pub(super) fn bad(path: &Path, msg: String) -> Error {
    Error::BadFile {
        path: path.to_path_buf(),
        msg,
    }
}

/// Tensors by name: shape and values (f32, row-major).
pub type Tensors = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// A safetensors file read: its tensors (as f32) and metadata.
pub(super) type Parsed = (Tensors, HashMap<String, String>);

/// Read a safetensors file: its tensors (as f32) and metadata.
pub(super) fn read_file(path: &Path) -> Result<Parsed> {
    let bytes = std::fs::read(path).map_err(|e| bad(path, format!("cannot read: {e}")))?;
    parse_file(path, &bytes)
}

/// [`read_file`] of a file's bytes (`path` names it in errors).
pub(super) fn parse_file(path: &Path, bytes: &[u8]) -> Result<Parsed> {
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

pub(super) fn check_format(path: &Path, meta: &HashMap<String, String>) -> Result<()> {
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

/// What decides a net's tensors, as the command line names it (for errors).
const FROM_FLAGS: &str = "--layers, --bias and --activation";

/// Tensor `name` of `shape` taken out of `tensors` (read from `file`); `from`: what decides the
/// net's tensors, named in errors.
fn take(
    tensors: &mut Tensors,
    file: &Path,
    name: &str,
    shape: &[usize],
    from: &str,
) -> Result<Vec<f32>> {
    let (found, data) = tensors.remove(name).ok_or_else(|| {
        bad(
            file,
            format!("has no tensor `{name}`, which the net needs (from {from})"),
        )
    })?;
    if found != shape {
        return Err(Error::Shape {
            path: file.to_path_buf(),
            expected: shape.to_vec(),
            found,
            hint: format!(" (tensor `{name}`, from {from})"),
        });
    }
    Ok(data)
}

/// The weights and biases of `job`'s net from tensors in the names and layouts of PyTorch's
/// `state_dict` (see [`named_tensors`]), read from `file`: every tensor the net needs, of its
/// shape, and no other. `from` names what decides the net's tensors in the errors (flags or
/// keyword arguments). A checkpoint's tensors, or a Python caller's `params`.
pub fn params_from_tensors(
    job: &Job,
    tensors: &mut Tensors,
    file: &Path,
    from: &str,
) -> Result<Params> {
    let d = &job.layers;
    let mut params = Params {
        weights: Vec::new(),
        biases: Vec::new(),
    };
    for l in 0..job.depth() {
        let m = module_name(job, l);
        let shape = [d[l + 1], d[l]];
        let w = take(tensors, file, &format!("{m}.weight"), &shape, from)?;
        let wt = Matrix::from_vec(d[l + 1], d[l], w);
        params
            .weights
            .push(Matrix::from_vec(d[l], d[l + 1], transpose(&wt)));
        if job.bias {
            let b = take(tensors, file, &format!("{m}.bias"), &[d[l + 1]], from)?;
            params.biases.push(Matrix::from_vec(1, d[l + 1], b));
        }
    }
    if let Some(extra) = tensors.keys().min() {
        return Err(bad(
            file,
            format!("has a tensor `{extra}` the net does not (check {from})"),
        ));
    }
    Ok(params)
}

/// The state in a model file and its optimizer file, read.
pub(super) fn load_parsed(
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
    let params = params_from_tensors(job, &mut tensors, path, FROM_FLAGS)?;
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
        let (depth, d) = (job.depth(), &job.layers);
        for (i, slot) in opt_state.iter_mut().enumerate() {
            let (l, is_bias) = if i < depth {
                (i, false)
            } else {
                (i - depth, true)
            };
            let m = module_name(job, l);
            for buf in names {
                let m = if is_bias {
                    let v = take(
                        opt,
                        opt_path,
                        &format!("{m}.bias.{buf}"),
                        &[d[l + 1]],
                        FROM_FLAGS,
                    )?;
                    Matrix::from_vec(1, d[l + 1], v)
                } else {
                    let name = format!("{m}.weight.{buf}");
                    let v = take(opt, opt_path, &name, &[d[l + 1], d[l]], FROM_FLAGS)?;
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

pub(super) fn job_from(path: &Path, meta: HashMap<String, String>) -> Result<Job> {
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
