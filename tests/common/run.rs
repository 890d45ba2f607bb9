//! The one runner of the `gpu-train` binary that the tests share: run it with arguments (and
//! environment), keep its exit code and output, and fail on any panic.

use std::path::Path;
use std::process::Command;

/// What one run of the binary produced.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn describe(&self) -> String {
        format!(
            "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    #[track_caller]
    pub fn success(self) -> Self {
        assert_eq!(self.code, Some(0), "expected success: {}", self.describe());
        self
    }

    /// `(epoch, loss)` of every `epoch N  loss L` line.
    pub fn epoch_lines(&self) -> Vec<(usize, f64)> {
        self.stdout
            .lines()
            .filter(|l| l.starts_with("epoch "))
            .map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                assert_eq!(w.len(), 4, "epoch line {l:?}");
                assert_eq!(w[2], "loss", "epoch line {l:?}");
                (w[1].parse().unwrap(), w[3].parse().unwrap())
            })
            .collect()
    }

    /// The summary line's `epochs N` and `final loss L`, and the device name.
    pub fn summary(&self) -> (String, usize, f64) {
        let line = self
            .stdout
            .lines()
            .find(|l| l.starts_with("device "))
            .unwrap_or_else(|| panic!("no summary line: {}", self.describe()));
        let fields: Vec<&str> = line.split(" | ").collect();
        let get = |prefix: &str| -> &str {
            fields
                .iter()
                .find_map(|f| f.strip_prefix(prefix))
                .unwrap_or_else(|| panic!("no `{prefix}` in summary line {line:?}"))
        };
        (
            get("device ").to_string(),
            get("epochs ").parse().unwrap(),
            get("final loss ").parse().unwrap(),
        )
    }
}

/// Run `gpu-train args...`; never accepts a panic.
pub fn run<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    run_env(args, &[])
}

/// Run `gpu-train args...` with extra environment variables; never accepts a panic.
pub fn run_env<I, S>(args: I, envs: &[(&str, &str)]) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    run_command(bin().args(args).envs(envs.iter().copied()))
}

/// The binary as a command to add arguments and environment to (`XDG_RUNTIME_DIR` set, which
/// lavapipe warns without; the tuning cache in a directory of the test process's own, so that no
/// test reads or writes the user's: a test that wants one sets `GPU_TRAIN_CACHE_DIR` after).
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gpu-train"));
    c.env(
        "XDG_RUNTIME_DIR",
        std::env::var("XDG_RUNTIME_DIR").unwrap_or("/tmp".into()),
    );
    let cache = std::env::temp_dir().join(format!("gpu-train-tests-{}", std::process::id()));
    c.env("GPU_TRAIN_CACHE_DIR", cache);
    c
}

/// Run a command of [`bin`] to its end; never accepts a panic.
pub fn run_command(c: &mut Command) -> Run {
    let out = c.output().expect("run gpu-train");
    let r = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        !r.stderr.contains("panicked") && !r.stderr.contains("RUST_BACKTRACE"),
        "the binary panicked: {}",
        r.describe()
    );
    r
}

/// A temporary path as the `&str` an argument list takes.
pub fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}
