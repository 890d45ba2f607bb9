//! The job description without a command line: JSON in the shape of a run summary's `config`
//! (every field optional, a preset to start from), resolved once into a validated [`Job`] and
//! its initial [`HostState`]. The browser page drives the library through it; a summary's
//! `config` read back reproduces its run.
//!
//! ```json
//! {"preset": "tutorial", "epochs": 100, "optimizer": {"kind": "adam"}, "lr": 1e-3}
//! ```

use crate::error::{Error, Result};
use crate::init::{HostState, Matrix};
use crate::io::{data, npy};
use crate::job::{
    self, Activation, DataSource, DynamicDepth, InitScheme, Job, Loss, OptimizerKind,
};
use crate::schedule::{LrSchedule, Schedule, Warmup};
use serde::Deserialize;
use std::path::Path;

/// A job as JSON. Fields left out keep the preset's values (the default job's without a preset);
/// names and values are those of the summary's `config` (`"loss": "cross-entropy"`,
/// `"activation": "leaky-relu:0.01"`, `"lr_schedule": {"schedule": "step:100:0.5"}`). An
/// unknown field is an error, not ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// One of `gpu-train presets`, applied first.
    pub preset: Option<String>,
    pub layers: Option<Vec<usize>>,
    pub batch: Option<usize>,
    pub lr: Option<f32>,
    pub epochs: Option<usize>,
    pub seed: Option<u64>,
    pub log_every: Option<usize>,
    #[serde(default, deserialize_with = "parsed::activation")]
    pub activation: Option<Activation>,
    #[serde(default, deserialize_with = "parsed::loss")]
    pub loss: Option<Loss>,
    #[serde(default, deserialize_with = "parsed::init_scheme")]
    pub init_scheme: Option<InitScheme>,
    pub bias: Option<bool>,
    pub optimizer: Option<OptimizerSpec>,
    pub lr_schedule: Option<ScheduleSpec>,
    /// `"normal"` (drawn from the seed), `{"x": [...], "y": [...]}` (row-major, one batch), or a
    /// summary's `{"x_file": ..., "y_file": ...}`: a dataset from files, which the caller loads
    /// and gives to [`JobSpec::resolve_with_data`].
    pub data: Option<serde_json::Value>,
    pub dynamic: Option<DynamicSpec>,
    pub rows: Option<usize>,
    pub shuffle: Option<bool>,
}

/// `optimizer` of a [`JobSpec`]: the kind and any hyperparameters to change.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerSpec {
    #[serde(default, deserialize_with = "parsed::optimizer")]
    pub kind: Option<OptimizerKind>,
    pub momentum: Option<f32>,
    pub nesterov: Option<bool>,
    pub beta1: Option<f32>,
    pub beta2: Option<f32>,
    pub eps: Option<f32>,
    pub weight_decay: Option<f32>,
}

/// `lr_schedule` of a [`JobSpec`], as `--lr-schedule` and `--warmup` take them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    #[serde(default, deserialize_with = "parsed::schedule")]
    pub schedule: Option<Schedule>,
    #[serde(default, deserialize_with = "parsed::warmup")]
    pub warmup: Option<Warmup>,
}

/// `dynamic` of a [`JobSpec`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamicSpec {
    pub max: usize,
    #[serde(default)]
    pub schedule: Vec<usize>,
}

/// The vocabularies' names in a job's JSON, parsed once as the job is read: a bad one is an error
/// naming its JSON key.
mod parsed {
    use crate::job::{Activation, InitScheme, Loss, Named, OptimizerKind};
    use crate::schedule::{Schedule, Warmup};
    use serde::{Deserialize, Deserializer};

    fn by<'de, D: Deserializer<'de>, T>(
        d: D,
        parse: impl Fn(&str) -> crate::Result<T>,
    ) -> Result<Option<T>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| parse(&s).map_err(|e| serde::de::Error::custom(e.for_json())))
            .transpose()
    }

    pub fn activation<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Activation>, D::Error> {
        by(d, Activation::parse)
    }

    pub fn loss<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Loss>, D::Error> {
        by(d, Loss::parse)
    }

    pub fn init_scheme<'de, D: Deserializer<'de>>(d: D) -> Result<Option<InitScheme>, D::Error> {
        by(d, InitScheme::parse)
    }

    pub fn optimizer<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OptimizerKind>, D::Error> {
        by(d, OptimizerKind::parse)
    }

    pub fn schedule<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Schedule>, D::Error> {
        by(d, Schedule::parse)
    }

    pub fn warmup<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Warmup>, D::Error> {
        by(d, Warmup::parse)
    }
}

impl JobSpec {
    /// Parse the JSON; a malformed document or a field of the wrong type is a bad-input error
    /// naming the line and column.
    pub fn parse(json: &str) -> Result<Self> {
        serde_json::from_str(json).map_err(|e| Error::arg("job", format!("{e}")))
    }

    /// The job it describes, not yet validated (a dataset from files leaves the default data).
    pub fn job(&self) -> Result<Job> {
        let mut job = match &self.preset {
            Some(name) => job::preset(name)?,
            None => Job::default(),
        };
        let set = |field: &mut usize, v: Option<usize>| {
            if let Some(v) = v {
                *field = v;
            }
        };
        set(&mut job.batch, self.batch);
        set(&mut job.epochs, self.epochs);
        set(&mut job.log_every, self.log_every);
        if let Some(l) = &self.layers {
            job.layers = l.clone();
        }
        if let Some(lr) = self.lr {
            job.lr = lr;
        }
        if let Some(s) = self.seed {
            job.seed = s;
        }
        if let Some(a) = self.activation {
            job.activation = a;
        }
        if let Some(l) = self.loss {
            job.loss = l;
        }
        if let Some(i) = self.init_scheme {
            job.init_scheme = i;
        }
        if let Some(b) = self.bias {
            job.bias = b;
        }
        if let Some(o) = &self.optimizer {
            let opt = &mut job.optimizer;
            if let Some(k) = o.kind {
                opt.kind = k;
                if opt.kind == OptimizerKind::AdamW && o.weight_decay.is_none() {
                    opt.weight_decay = job::DEFAULT_ADAMW_DECAY;
                }
            }
            for (field, v) in [
                (&mut opt.momentum, o.momentum),
                (&mut opt.beta1, o.beta1),
                (&mut opt.beta2, o.beta2),
                (&mut opt.eps, o.eps),
                (&mut opt.weight_decay, o.weight_decay),
            ] {
                if let Some(v) = v {
                    *field = v;
                }
            }
            if let Some(n) = o.nesterov {
                opt.nesterov = n;
            }
        }
        if let Some(s) = &self.lr_schedule {
            // A summary writes "constant" and a null warmup for the plain schedule.
            job.lr_schedule = LrSchedule {
                main: s.schedule.unwrap_or_default(),
                warmup: s.warmup,
            };
        }
        if let Some(d) = &self.dynamic {
            job.dynamic = Some(DynamicDepth {
                max: d.max,
                schedule: d.schedule.clone(),
            });
        }
        if let Some(r) = self.rows {
            job.rows = Some(r);
            if self.batch.is_none() {
                job.batch = job.batch.min(r.max(1));
            }
        }
        if let Some(s) = self.shuffle {
            job.shuffle = s;
        }
        if let Some(source) = self.data.as_ref().map(data_source).transpose()?.flatten() {
            job.data = source;
        }
        Ok(job)
    }

    /// Whether its data is a dataset from files (a summary's `{"x_file": ..., "y_file": ...}`).
    pub fn data_from_files(&self) -> Result<bool> {
        Ok(match &self.data {
            Some(v) => data_source(v)?.is_none(),
            None => false,
        })
    }

    /// The number of classes that integer targets become one-hot over: the last width of
    /// `layers`, if given (else the file's largest index + 1).
    pub fn classes(&self) -> Option<usize> {
        self.layers.as_ref().and_then(|l| l.last().copied())
    }

    /// The validated job and its seeded initial state (x and y drawn from the seed, or the
    /// spec's fixed batch). A spec whose data is a dataset from files needs
    /// [`JobSpec::resolve_with_data`].
    pub fn resolve(&self) -> Result<(Job, HostState)> {
        let job = self.job()?;
        if self.data_from_files()? {
            return Err(Error::arg(
                "data",
                "a dataset from files: give its x and y matrices (resolve_with_data)",
            ));
        }
        job.validate()?;
        let state = HostState::seeded(&job);
        Ok((job, state))
    }

    /// The validated job on the dataset `x`, `y` (named `names` in errors and the summary): its
    /// widths are the net's input and output (`layers`, if given, must agree), its rows the
    /// dataset's, in batches of `batch` (default: the job's batch, at most the rows).
    pub fn resolve_with_data(
        &self,
        x: Matrix,
        y: Matrix,
        names: (String, String),
    ) -> Result<(Job, HostState)> {
        let job = self.job()?;
        if self.rows.is_some() {
            return Err(Error::arg(
                "--rows",
                "cannot be combined with a dataset from files (--x/--y or --data)",
            ));
        }
        let source = DataSource::Files {
            x: names.0,
            y: names.1,
        };
        let given = (self.layers.is_some(), self.batch.is_some());
        with_data(job, (x, y, source), given.0, given.1)
    }
}

impl JobSpec {
    /// The job on a dataset given as the bytes of two .npy files named `x.0` and `y.0` (the
    /// browser page's upload): x a float matrix, y floats or class indices (one-hot over the last
    /// width of `layers`, if given, else the largest index + 1), checked as `--x`/`--y` are; a
    /// malformed file is an error naming it and the fault.
    pub fn resolve_npy(&self, x: (&str, &[u8]), y: (&str, &[u8])) -> Result<(Job, HostState)> {
        let job = self.job()?;
        let classes = self.classes();
        let (x_path, y_path) = (Path::new(x.0), Path::new(y.0));
        let (xm, ym) = data::parse_npy_pair((x_path, x.1), (y_path, y.1), classes)?;
        let ym = data::targets_for(job.loss, y_path, ym, classes)?;
        self.resolve_with_data(xm, ym, (x.0.to_string(), y.0.to_string()))
    }
}

impl JobSpec {
    /// The job on the state saved by `--save-init` in `dir` (x.npy, y.npy, w1.npy, ..., and
    /// b1.npy, ... for a net with biases): the files' shapes give `layers` and `batch` where those
    /// are not given and must match them where they are; their rows are the dataset.
    pub fn resolve_init(&self, dir: &Path) -> Result<(Job, HostState)> {
        let mut job = self.job()?;
        if self.rows.is_some() {
            return Err(Error::arg(
                "--rows",
                "the --init files give the dataset's rows",
            ));
        }
        // What the spec says is validated before the files are read, so that a bad value is
        // reported as such (all but dynamic depth, which depends on the widths the files give).
        let dynamic = job.dynamic.take();
        job.validate()?;
        job.dynamic = dynamic;
        let mut state = npy::load_state(dir)?;
        let y = std::mem::replace(&mut state.y, Matrix::zeros(0, 0));
        state.y = data::targets_for(job.loss, &dir.join("y.npy"), y, self.classes())?;
        let (file_layers, file_rows) = state.dims();
        // The files' rows are the dataset; a batch may split it into mini-batches.
        job.layers = self.layers.clone().unwrap_or(file_layers);
        job.batch = self.batch.unwrap_or(file_rows);
        job.rows = Some(file_rows);
        check_init_matches(dir, &job, &state)?;
        // The files define the net: biases there mean a net with biases.
        if job.bias && state.biases.is_empty() {
            return Err(Error::BadFile {
                path: dir.join(npy::bias_file(0)),
                msg: "missing: --bias with --init needs b1.npy, b2.npy, ... beside the weights"
                    .into(),
            });
        }
        job.bias = !state.biases.is_empty();
        job.validate()?;
        Ok((job, state))
    }
}

/// Every --init file must have the shape the job implies.
fn check_init_matches(dir: &Path, job: &Job, state: &HostState) -> Result<()> {
    let mismatch = |name: String, expected: [usize; 2], found: [usize; 2]| -> Result<()> {
        if expected == found {
            return Ok(());
        }
        Err(Error::Shape {
            path: dir.join(name),
            expected: expected.to_vec(),
            found: found.to_vec(),
            hint: " (from --layers/--batch)".to_string(),
        })
    };
    mismatch("x.npy".into(), job.x_shape(), state.x.shape())?;
    let n_files = state.weights.len();
    if n_files < job.depth() {
        return Err(Error::BadFile {
            path: dir.join(npy::weight_file(n_files)),
            msg: format!("missing: --layers asks for {} weights", job.depth()),
        });
    }
    if n_files > job.depth() {
        return Err(Error::BadFile {
            path: dir.join(npy::weight_file(job.depth())),
            msg: format!(
                "present, but --layers asks for only {} weights (remove the file or fix --layers)",
                job.depth()
            ),
        });
    }
    for (l, w) in state.weights.iter().enumerate() {
        mismatch(npy::weight_file(l), job.weight_shape(l), w.shape())?;
    }
    mismatch("y.npy".into(), job.y_shape(), state.y.shape())
}

/// A summary's `data` value: the source, or None for a dataset from files (the caller's to load).
fn data_source(v: &serde_json::Value) -> Result<Option<DataSource>> {
    let bad = || {
        Error::arg(
            "data",
            format!(
                "`{}`: expected \"normal\", {{\"x\": [...], \"y\": [...]}} or \
                 {{\"x_file\": ..., \"y_file\": ...}}",
                crate::text::truncate(&v.to_string(), 60)
            ),
        )
    };
    if v.as_str() == Some("normal") {
        return Ok(Some(DataSource::Normal));
    }
    let Some(obj) = v.as_object() else {
        return Err(bad());
    };
    if obj.contains_key("x_file") && obj.contains_key("y_file") && obj.len() == 2 {
        return Ok(None);
    }
    let numbers = |key: &str| -> Option<Vec<f32>> {
        (obj.get(key)?.as_array()?.iter())
            .map(|n| n.as_f64().map(|f| f as f32))
            .collect()
    };
    match (numbers("x"), numbers("y"), obj.len()) {
        (Some(x), Some(y), 2) => Ok(Some(DataSource::Fixed { x, y })),
        _ => Err(bad()),
    }
}

/// A job on a dataset from files: its widths are the net's input and output (`layers_given`: they
/// must agree with the job's; else the job's hidden widths go between them), its rows the
/// dataset's, trained in batches of the job's batch (`batch_given`: as given; else at most the
/// rows).
fn with_data(
    mut job: Job,
    (x, y, source): (Matrix, Matrix, DataSource),
    layers_given: bool,
    batch_given: bool,
) -> Result<(Job, HostState)> {
    let depth = job.depth();
    let (x_file, y_file) = match &source {
        DataSource::Files { x, y } => (x.clone(), y.clone()),
        _ => ("x".to_string(), "y".to_string()),
    };
    if x.rows != y.rows {
        return Err(Error::arg(
            "--y",
            format!(
                "{y_file} has {} rows but {x_file} has {}: one target row per input row",
                y.rows, x.rows
            ),
        ));
    }
    if layers_given {
        for (file, has, what, width, which) in [
            (&x_file, x.cols, "inputs", job.layers[0], "first"),
            (&y_file, y.cols, "targets", job.layers[depth], "last"),
        ] {
            if has != width {
                return Err(Error::arg(
                    "--layers",
                    format!("{file} has {has} {what} per row, but the {which} width is {width}"),
                ));
            }
        }
    } else {
        job.layers[0] = x.cols;
        job.layers[depth] = y.cols;
    }
    job.rows = Some(x.rows);
    if !batch_given {
        job.batch = job.batch.min(x.rows);
    }
    job.data = source;
    job.validate()?;
    let state = HostState::with_data(&job, x, y);
    Ok((job, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_spec_is_the_default_job() {
        let (job, state) = JobSpec::parse("{}").unwrap().resolve().unwrap();
        assert_eq!(job, Job::default());
        assert_eq!(state, HostState::seeded(&Job::default()));
    }

    #[test]
    fn a_summary_config_reads_back_as_the_same_job() {
        let mut job = job::preset("digits").unwrap();
        job.seed = 7;
        job.optimizer.kind = OptimizerKind::AdamW;
        job.optimizer.weight_decay = 0.05;
        job.lr_schedule = LrSchedule::parse(Some("cosine:50:0.0001"), Some("5:0.1")).unwrap();
        job.activation = Activation::LeakyRelu(0.2);
        job.init_scheme = InitScheme::Constant(0.5);
        job.dynamic = Some(DynamicDepth {
            max: 2,
            schedule: vec![0, 2, 1],
        });
        let json = serde_json::to_string(&job).unwrap();
        let back = JobSpec::parse(&json).unwrap().job().unwrap();
        assert_eq!(back, job, "{json}");
    }

    #[test]
    fn bad_specs_name_the_field() {
        for (json, needle) in [
            (r#"{"lr": "fast"}"#, "invalid type"),
            (r#"{"epoch": 5}"#, "unknown field `epoch`"),
            (
                r#"{"loss": "hinge"}"#,
                "invalid value for loss: unknown value `hinge`",
            ),
            (
                r#"{"optimizer": {"kind": "lion"}}"#,
                "invalid value for optimizer.kind",
            ),
            (r#"{"layers": [1000]}"#, "--layers"),
            (r#"{"data": 3}"#, "data"),
            (r#"{"preset": "nope"}"#, "nope"),
            (
                r#"{"layers": [4, 2], "batch": 2, "data": {"x": [1, 2], "y": [1]}}"#,
                "x",
            ),
        ] {
            let err = JobSpec::parse(json)
                .and_then(|s| s.resolve())
                .map(|_| ())
                .expect_err(json)
                .to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    /// Every field of `error::FIELDS` is a key of the JSON (not refused as unknown), and a bad
    /// value read from JSON is named by that key, never by its flag.
    #[test]
    fn errors_name_the_json_key_of_the_field() {
        for &(flag, key) in crate::error::FIELDS {
            let json = match key.split_once('.') {
                Some((outer, inner)) => format!(r#"{{"{outer}": {{"{inner}": "?"}}}}"#),
                None => format!(r#"{{"{key}": "?"}}"#),
            };
            if let Err(e) = JobSpec::parse(&json) {
                let e = e.to_string();
                assert!(!e.contains("unknown field"), "{flag} -> {key}: {e}");
            }
        }
        for (json, key, flag) in [
            (r#"{"layers": [1000]}"#, "layers", "--layers"),
            (r#"{"lr": -1}"#, "lr", "--lr"),
            (
                r#"{"optimizer": {"kind": "momentum", "momentum": 2}}"#,
                "optimizer.momentum",
                "--momentum",
            ),
        ] {
            let e = JobSpec::parse(json)
                .and_then(|s| s.resolve())
                .expect_err(json);
            let (cli, page) = (e.to_string(), e.for_json().to_string());
            assert!(cli.contains(flag), "{json}: {cli}");
            assert!(page.contains(&format!("for {key}:")), "{json}: {page}");
            assert!(!page.contains(flag), "{json}: {page}");
        }
        // The values parsed as the JSON is read (the command line's are parsed by its flags):
        // the error names the key, however it is rendered.
        for (json, key, flag) in [
            (
                r#"{"lr_schedule": {"schedule": "step:0:0.5"}}"#,
                "lr_schedule.schedule",
                "--lr-schedule",
            ),
            (
                r#"{"lr_schedule": {"warmup": "0"}}"#,
                "lr_schedule.warmup",
                "--warmup",
            ),
            (r#"{"activation": "relu:2"}"#, "activation", "--activation"),
            (r#"{"loss": "l3"}"#, "loss", "--loss"),
        ] {
            let e = JobSpec::parse(json).expect_err(json);
            for text in [e.to_string(), e.for_json().to_string()] {
                assert!(text.contains(&format!("for {key}:")), "{json}: {text}");
                assert!(!text.contains(flag), "{json}: {text}");
            }
        }
    }

    #[test]
    fn a_dataset_gives_the_widths_and_rows() {
        let spec = JobSpec::parse(r#"{"layers": [1, 16, 1], "batch": 4}"#).unwrap();
        let x = Matrix::from_vec(10, 3, vec![0.5; 30]);
        let y = Matrix::from_vec(10, 2, vec![1.0; 20]);
        let names = ("x.npy".to_string(), "y.npy".to_string());
        let err = spec
            .resolve_with_data(x.clone(), y.clone(), names.clone())
            .expect_err("widths disagree");
        assert!(err.to_string().contains("x.npy has 3 inputs"), "{err}");
        let spec = JobSpec::parse(r#"{"batch": 4}"#).unwrap();
        let (job, state) = spec.resolve_with_data(x, y, names).unwrap();
        assert_eq!((job.layers[0], job.layers[2], job.rows), (3, 2, Some(10)));
        assert_eq!(state.x.rows, 10);
    }
}
