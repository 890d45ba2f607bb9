//! Writing a checkpoint: the model file and the optimizer file beside it, each atomically, the
//! pair under one fresh generation, the previous optimizer file kept while the save is under way.

use super::*;

/// One safetensors file's bytes (`path` names it in errors).
pub(super) fn file_bytes(
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
pub(super) fn write_file(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    meta: HashMap<String, String>,
) -> Result<()> {
    let data = file_bytes(path, tensors, meta)?;
    crate::io::atomic_write(path, |w| w.write_all(&data))
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
pub(super) fn model_meta(
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
pub(super) fn keep_previous(path: &Path) -> Result<()> {
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
        crate::io::atomic_write(&prev, |w| w.write_all(&bytes))?;
    }
    Ok(())
}

/// A value that no other save has given a pair of files (a random 64-bit number).
pub(super) fn fresh_generation() -> String {
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
