//! The library's typed errors, each carrying what a user needs to fix the problem, and the exit
//! code the binary maps it to (2 bad input, 3 divergence, 1 anything else).

use std::path::PathBuf;

/// Everything that can go wrong in a run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag's value is malformed or out of range.
    #[error("invalid value for {flag}: {msg}")]
    InvalidArg { flag: &'static str, msg: String },

    /// `--device` named something that does not exist.
    #[error("{0}")]
    Device(String),

    /// A job that does not fit the adapter's limits.
    #[error("job too large for this adapter: {buffer} needs {needed}, but the adapter's {limit} is {allowed}")]
    TooLarge {
        buffer: String,
        needed: String,
        limit: &'static str,
        allowed: String,
    },

    /// An input file that cannot be used.
    #[error("{path}: {msg}")]
    BadFile { path: PathBuf, msg: String },

    /// An input array whose shape does not match the job.
    #[error("{path}: expected shape {expected:?}, found {found:?}{hint}")]
    Shape {
        path: PathBuf,
        expected: Vec<usize>,
        found: Vec<usize>,
        hint: String,
    },

    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// `gpu-train bench` finished, but some of its rows failed or could not run.
    #[error("{0}")]
    Bench(String),

    /// `gpu-train verify` finished, but some kernels computed wrong results.
    #[error("{0}")]
    Verify(String),

    /// The loss became NaN or infinite.
    #[error("the loss became {loss} at epoch {epoch}: the learning rate {lr:e} is probably too high (try --lr {suggest:e} or smaller)")]
    Diverged {
        epoch: usize,
        loss: f32,
        lr: f32,
        suggest: f32,
    },

    /// Every variant of a sweep diverged.
    #[error("every variant diverged ({variants} of {variants}): the learning rates are probably too high")]
    SweepDiverged { variants: usize },

    /// SIGINT or SIGTERM: the run stopped after the chunk in flight, its files written.
    #[error("interrupted after epoch {epoch}; {saved}")]
    Interrupted { epoch: usize, saved: String },

    /// Some outputs of a finished run could not be written (a full disk, say); the others were.
    #[error("{}", outputs_text(.0))]
    Outputs(Vec<Error>),

    /// The GPU failed at run time (device lost, out of memory, validation).
    #[error("GPU error: {0}")]
    Gpu(String),
}

impl Error {
    /// The process exit code for this error: 2 for anything the user can fix in the command line
    /// or input files, 3 for a diverged run, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::InvalidArg { .. }
            | Error::Device(_)
            | Error::TooLarge { .. }
            | Error::BadFile { .. }
            | Error::Shape { .. } => 2,
            Error::Diverged { .. } | Error::SweepDiverged { .. } => 3,
            Error::Interrupted { .. } => 130,
            Error::Io { .. }
            | Error::Outputs(_)
            | Error::Gpu(_)
            | Error::Bench(_)
            | Error::Verify(_) => 1,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn arg(flag: &'static str, msg: impl Into<String>) -> Self {
        Error::InvalidArg {
            flag,
            msg: msg.into(),
        }
    }

    /// The error as a job sent as JSON (the page's, a summary's `config`) should read it: a bad
    /// value named by its JSON key (`optimizer.weight_decay`) instead of its flag
    /// (`--weight-decay`). Errors of fields that have no key, and all others, are unchanged.
    pub fn for_json(self) -> Self {
        match self {
            Error::InvalidArg { flag, msg } => Error::InvalidArg {
                flag: json_key(flag).unwrap_or(flag),
                msg,
            },
            e => e,
        }
    }
}

/// Each field of a job by its flag and by its key in a job's JSON (`spec::JobSpec`).
pub const FIELDS: &[(&str, &str)] = &[
    ("--preset", "preset"),
    ("--layers", "layers"),
    ("--batch", "batch"),
    ("--lr", "lr"),
    ("--epochs", "epochs"),
    ("--seed", "seed"),
    ("--log-every", "log_every"),
    ("--activation", "activation"),
    ("--loss", "loss"),
    ("--init-scheme", "init_scheme"),
    ("--bias", "bias"),
    ("--optimizer", "optimizer.kind"),
    ("--momentum", "optimizer.momentum"),
    ("--nesterov", "optimizer.nesterov"),
    ("--beta1", "optimizer.beta1"),
    ("--beta2", "optimizer.beta2"),
    ("--eps", "optimizer.eps"),
    ("--weight-decay", "optimizer.weight_decay"),
    ("--lr-schedule", "lr_schedule.schedule"),
    ("--warmup", "lr_schedule.warmup"),
    ("--dynamic-depth", "dynamic.max"),
    ("--rows", "rows"),
    ("--shuffle", "shuffle"),
];

/// The JSON key of the job's field that `flag` sets.
pub fn json_key(flag: &str) -> Option<&'static str> {
    FIELDS.iter().find(|(f, _)| *f == flag).map(|&(_, k)| k)
}

fn outputs_text(failed: &[Error]) -> String {
    let list: Vec<String> = failed.iter().map(|e| format!("\n  {e}")).collect();
    format!(
        "{} output(s) could not be written (nothing partial was left; the others were \
         written):{}",
        failed.len(),
        list.concat()
    )
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
