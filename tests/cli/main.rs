//! The `gpu-train` binary end to end: the default run on each device, the `devices` command, every
//! output file, the `--init` round trip, and every kind of bad input (exit 2 with a message that
//! names the flag or file, never a panic), divergence (exit 3); the bench, verify, the checked-in
//! fixtures through the binary, random command lines, and what a kill or a full disk leaves.
//!
//! One test binary (linking is most of a test build's time): one module per topic. Most runs use
//! `--device cpu` and reduced jobs, for speed.

#[path = "../common/mod.rs"]
mod common;

pub(crate) use common::run::{p, run, run_env, Run};
use gpu_train::init::HostState;
use gpu_train::io::npy;
use gpu_train::job::Job;
use std::path::Path;

/// A reduced job's flags and the job they describe.
pub const SMALL: [&str; 8] = [
    "--layers", "30,20,4", "--batch", "9", "--epochs", "25", "--lr", "1e-4",
];

pub fn small_job() -> Job {
    Job {
        layers: vec![30, 20, 4],
        batch: 9,
        lr: 1e-4,
        epochs: 25,
        seed: 0,
        log_every: 50,
        ..Job::default()
    }
}

/// The default job's output: header, epoch lines 0, 50, ..., 450 with falling losses, a summary
/// line with 500 epochs and a final loss below 1e-2.
#[track_caller]
pub fn check_default_run(r: &Run) -> String {
    let header = r.stdout.lines().next().unwrap_or_default();
    assert!(
        header.contains("batch 64 x [1000 -> 100 -> 10]") && header.contains("500 epochs"),
        "header line: {}",
        r.describe()
    );
    let lines = r.epoch_lines();
    let epochs: Vec<usize> = lines.iter().map(|&(e, _)| e).collect();
    assert_eq!(
        epochs,
        (0..=450).step_by(50).collect::<Vec<_>>(),
        "{}",
        r.describe()
    );
    assert!(lines[0].1 > 1e6, "first loss {}", lines[0].1);
    assert!(
        lines.windows(2).all(|w| w[1].1 < w[0].1),
        "the logged loss must fall: {lines:?}"
    );
    let (device, epochs, final_loss) = r.summary();
    assert_eq!(epochs, 500);
    assert!(
        final_loss < 1e-2,
        "final loss {final_loss:e}: {}",
        r.describe()
    );
    assert!(final_loss < lines[9].1, "final loss above epoch 450's");
    device
}

/// Spawn `cmd`, wait for its `n`-th `epoch ` line on stdout, send it SIGINT, and wait for it:
/// its exit code, its stderr, and the stdout lines after the n-th.
#[cfg(unix)]
pub fn interrupt_after_epochs(
    cmd: &mut std::process::Command,
    n: usize,
) -> (Option<i32>, String, Vec<String>) {
    use std::io::BufRead;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn gpu-train");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut seen = 0;
    for line in lines.by_ref() {
        if line.expect("stdout").starts_with("epoch ") {
            seen += 1;
            if seen == n {
                break;
            }
        }
    }
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let rest: Vec<String> = lines.map_while(|l| l.ok()).collect();
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), stderr, rest)
}

#[track_caller]
pub fn assert_bad_input(r: &Run, needles: &[&str]) {
    assert_eq!(r.code, Some(2), "bad input must exit 2: {}", r.describe());
    assert!(r.stderr.contains("error"), "{}", r.describe());
    for n in needles {
        assert!(
            r.stderr.contains(n),
            "the message should mention `{n}`: {}",
            r.describe()
        );
    }
    assert!(
        r.epoch_lines().is_empty(),
        "bad input must be caught before training: {}",
        r.describe()
    );
}

/// The one builder of the command lines the tests share: the device, the reduced job, `--quiet`,
/// `--epochs` and any other flag, appended in the order given (the binary gets exactly that list).
#[derive(Debug, Clone, Default)]
pub struct Cmd(Vec<String>);

impl Cmd {
    /// `--device DEVICE`.
    pub fn on(device: &str) -> Self {
        Cmd::default().flag("--device", device)
    }

    /// `--device cpu`: most tests train on the CPU path, for speed.
    pub fn cpu() -> Self {
        Cmd::on("cpu")
    }

    /// The reduced job ([`SMALL`], described by [`small_job`]).
    pub fn small(self) -> Self {
        self.args(SMALL)
    }

    pub fn quiet(self) -> Self {
        self.arg("--quiet")
    }

    pub fn epochs(self, n: usize) -> Self {
        self.flag("--epochs", n)
    }

    /// `name value`.
    pub fn flag(self, name: &str, value: impl std::fmt::Display) -> Self {
        self.arg(name).arg(value)
    }

    /// One argument: a switch, a subcommand or a value.
    pub fn arg(mut self, a: impl std::fmt::Display) -> Self {
        self.0.push(a.to_string());
        self
    }

    pub fn args<S: std::fmt::Display>(self, list: impl IntoIterator<Item = S>) -> Self {
        list.into_iter().fold(self, Cmd::arg)
    }

    pub fn run(&self) -> Run {
        run(&self.0)
    }

    pub fn run_env(&self, envs: &[(&str, &str)]) -> Run {
        run_env(&self.0, envs)
    }
}

macro_rules! bad_flag {
    ($name:ident, [$($arg:expr),*], [$($needle:expr),*]) => {
        #[test]
        fn $name() {
            let r = Cmd::cpu().args([$($arg),*]).run();
            assert_bad_input(&r, &[$($needle),*]);
        }
    };
}

/// A directory of `--init` files of the small job, as `--save-init` writes them.
pub fn init_dir() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    npy::save_state(tmp.path(), &HostState::seeded(&small_job())).unwrap();
    // Sanity: as written, it loads.
    npy::load_state(tmp.path()).unwrap();
    tmp
}

pub fn run_init(dir: &Path) -> Run {
    Cmd::cpu().epochs(2).flag("--init", p(dir)).run()
}

/// A .npy file (format 1.0) with a header of our choosing and the given payload.
pub fn write_npy(path: &Path, descr: &str, shape: &[usize], payload: &[u8]) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(payload);
    std::fs::write(path, bytes).unwrap();
}

mod bad_input;
mod bench;
mod classify;
mod data;
mod fixture;
mod outputs;
mod properties;
mod reliability;
mod sweep;
mod train;
mod verify;
