//! The `gpu-train` binary end to end: the default run on each device, the `devices` command, every
//! output file, the `--init` round trip, and every kind of bad input (exit 2 with a message that
//! names the flag or file, never a panic), divergence (exit 3).
//!
//! Most runs use `--device cpu` and reduced jobs, for speed.

mod common;

use assert_cmd::Command;
use common::{gpu_or_skip, read_history_csv};
use gpu_train::backend::Backend;
use gpu_train::cpu::CpuBackend;
use gpu_train::init::{HostState, Matrix};
use gpu_train::io::npy;
use gpu_train::job::Job;
use std::path::Path;

/// What one run of the binary produced.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn describe(&self) -> String {
        format!(
            "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    #[track_caller]
    fn success(self) -> Self {
        assert_eq!(self.code, Some(0), "expected success: {}", self.describe());
        self
    }

    /// `(epoch, loss)` of every `epoch N  loss L` line.
    fn epoch_lines(&self) -> Vec<(usize, f64)> {
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
    fn summary(&self) -> (String, usize, f64) {
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
fn run<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    run_env(args, &[])
}

/// Run `gpu-train args...` with extra environment variables; never accepts a panic.
fn run_env<I, S>(args: I, envs: &[(&str, &str)]) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = Command::new(env!("CARGO_BIN_EXE_gpu-train"))
        .args(args)
        .envs(envs.iter().copied())
        .env(
            "XDG_RUNTIME_DIR",
            std::env::var("XDG_RUNTIME_DIR").unwrap_or("/tmp".into()),
        )
        .output()
        .expect("run gpu-train");
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

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// A reduced job's flags and the job they describe.
const SMALL: [&str; 8] = [
    "--layers", "30,20,4", "--batch", "9", "--epochs", "25", "--lr", "1e-4",
];

fn small_job() -> Job {
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
fn check_default_run(r: &Run) -> String {
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

#[test]
fn cli_default_job_on_cpu_logs_every_50_epochs_and_converges() {
    let r = run(["--device", "cpu"]).success();
    let device = check_default_run(&r);
    assert_eq!(device, "cpu");
}

#[test]
fn cli_default_job_on_gpu_logs_every_50_epochs_and_converges() {
    let Some(ctx) = gpu_or_skip() else { return };
    let r = run(["--device", "gpu"]).success();
    let device = check_default_run(&r);
    assert_eq!(device, ctx.info.name, "summary names the adapter");
    // The same job on the CPU logs (to the 7 printed digits) nearly the same losses.
    let cpu = run(["--device", "cpu"]).success();
    for ((e, g), (_, c)) in r.epoch_lines().into_iter().zip(cpu.epoch_lines()) {
        assert!(
            (g - c).abs() <= 3e-3 * c.sqrt() + 1e-5 * c,
            "epoch {e}: gpu {g:e} cpu {c:e} (tolerance: tests/parity.rs trajectory_tol)"
        );
    }
}

#[test]
fn cli_devices_lists_adapters_and_what_auto_would_choose() {
    let r = run(["devices"]).success();
    assert!(
        r.stdout.contains("auto would choose"),
        "`devices` must say what --device auto picks: {}",
        r.describe()
    );
    if let Some(ctx) = gpu_or_skip() {
        assert!(r.stdout.contains("[0] "), "adapter lines: {}", r.describe());
        assert!(r.stdout.contains(&ctx.info.name), "{}", r.describe());
    }
}

#[test]
fn cli_quiet_prints_only_the_summary_line() {
    let r = run(SMALL.iter().copied().chain(["--device", "cpu", "--quiet"])).success();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{}", r.describe());
    let (_, epochs, _) = r.summary();
    assert_eq!(epochs, 25);
}

#[test]
fn cli_save_init_then_init_reproduces_the_losses_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let init = tmp.path().join("init");
    let (h1, h2) = (tmp.path().join("h1.csv"), tmp.path().join("h2.csv"));
    run(SMALL
        .iter()
        .copied()
        .chain(["--device", "cpu", "--quiet", "--seed", "7"])
        .chain(["--save-init", p(&init), "--history", p(&h1)]))
    .success();
    // The saved arrays are the seeded state, in numpy's layout.
    let seeded = HostState::seeded(&Job {
        seed: 7,
        ..small_job()
    });
    assert_eq!(npy::load_state(&init).unwrap(), seeded);
    // Shapes come from the files; only lr and epochs are given again.
    run([
        "--device",
        "cpu",
        "--quiet",
        "--epochs",
        "25",
        "--lr",
        "1e-4",
        "--init",
        p(&init),
        "--history",
        p(&h2),
    ])
    .success();
    let (a, b) = (
        std::fs::read_to_string(&h1).unwrap(),
        std::fs::read_to_string(&h2).unwrap(),
    );
    assert_eq!(a.lines().count(), 26);
    assert_eq!(a, b, "the run from --init differs from the seeded run");
}

/// With --bias the saved state holds b1.npy, b2.npy, ... (1-D, as PyTorch keeps biases) and
/// --init brings them back: the run from the files repeats the seeded run exactly, on the GPU too.
#[test]
fn cli_bias_save_init_then_init_round_trips_the_biases() {
    let tmp = tempfile::tempdir().unwrap();
    let (init, fin) = (tmp.path().join("init"), tmp.path().join("final"));
    let (h1, h2) = (tmp.path().join("h1.csv"), tmp.path().join("h2.csv"));
    let flags = ["--bias", "--init-scheme", "torch", "--quiet"];
    run(SMALL
        .iter()
        .copied()
        .chain(flags)
        .chain(["--device", "cpu", "--seed", "5"])
        .chain(["--save-init", p(&init), "--history", p(&h1)])
        .chain(["--save-final", p(&fin)]))
    .success();
    let seeded = HostState::seeded(&Job {
        seed: 5,
        bias: true,
        init_scheme: gpu_train::job::InitScheme::Torch,
        ..small_job()
    });
    assert_eq!(seeded.biases.len(), 2);
    assert_eq!(npy::load_state(&init).unwrap(), seeded);
    for (l, b) in seeded.biases.iter().enumerate() {
        let file = init.join(format!("b{}.npy", l + 1));
        let bytes = std::fs::read(&file).unwrap();
        let arr = npyz::NpyFile::new(&bytes[..]).unwrap();
        assert_eq!(arr.shape(), &[b.cols as u64], "{} is 1-D", file.display());
        let fin_b = npy::read_vector(&fin.join(format!("b{}.npy", l + 1))).unwrap();
        assert_ne!(
            &fin_b,
            b,
            "b{}.npy after training holds the initial bias",
            l + 1
        );
    }
    // From the files alone (no --bias: the files say there are biases), on every device.
    let mut devices = vec!["cpu"];
    if gpu_or_skip().is_some() {
        devices.push("gpu");
    }
    for device in devices {
        run([
            "--device",
            device,
            "--quiet",
            "--epochs",
            "25",
            "--lr",
            "1e-4",
            "--init",
            p(&init),
            "--history",
            p(&h2),
        ])
        .success();
        let (a, b) = (
            std::fs::read_to_string(&h1).unwrap(),
            std::fs::read_to_string(&h2).unwrap(),
        );
        if device == "cpu" {
            assert_eq!(a, b, "the run from --init differs from the seeded run");
        } else {
            let h = |t: &str| -> Vec<f64> {
                t.lines()
                    .skip(1)
                    .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
                    .collect()
            };
            for (e, (x, y)) in h(&a).into_iter().zip(h(&b)).enumerate() {
                assert!(
                    (x - y).abs() <= 1e-4 * x.abs(),
                    "epoch {e}: cpu {x} gpu {y}"
                );
            }
        }
    }
}

#[test]
fn bias_with_init_lacking_bias_files_exits_2_naming_b1() {
    let dir = init_dir();
    let r = run([
        "--device",
        "cpu",
        "--bias",
        "--init",
        p(dir.path()),
        "--epochs",
        "1",
    ]);
    assert_bad_input(&r, &["b1.npy", "missing"]);
}

#[test]
fn init_with_wrong_shape_bias_exits_2_naming_file_and_shapes() {
    let dir = init_dir();
    let state = npy::load_state(dir.path()).unwrap();
    for (l, w) in state.weights.iter().enumerate() {
        let n = if l == 1 { w.cols + 1 } else { w.cols };
        npy::write_vector(
            &dir.path().join(format!("b{}.npy", l + 1)),
            &Matrix::zeros(1, n),
        )
        .unwrap();
    }
    let r = run_init(dir.path());
    assert_bad_input(&r, &["b2.npy", &state.weights[1].cols.to_string()]);
}

#[test]
fn cli_presets_lists_every_preset_with_a_line_each() {
    let r = run(["presets"]).success();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        gpu_train::job::PRESETS.len(),
        "{}",
        r.describe()
    );
    for (line, p) in lines.iter().zip(gpu_train::job::PRESETS) {
        assert!(line.starts_with(p.name), "{line}");
        assert!(line.len() > p.name.len() + 10, "no description: {line}");
    }
}

/// A preset sets the job; any flag given with it wins.
#[test]
fn cli_preset_is_overridden_by_explicit_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let j = tmp.path().join("run.json");
    run([
        "--device",
        "cpu",
        "--preset",
        "adam",
        "--lr",
        "1e-3",
        "--epochs",
        "3",
        "--layers",
        "20,8,3",
        "--no-bias",
        "--summary-json",
        p(&j),
        "--quiet",
    ])
    .success();
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&j).unwrap()).unwrap();
    let c = &v["config"];
    assert_eq!(c["optimizer"]["kind"], "adam", "from the preset: {c:#}");
    assert_eq!(c["init_scheme"], "torch", "from the preset: {c:#}");
    assert!(
        (c["lr"].as_f64().unwrap() - 1e-3).abs() < 1e-9,
        "flag wins: {c:#}"
    );
    assert_eq!(c["bias"], false, "--no-bias wins: {c:#}");
    assert_eq!(c["epochs"], 3);
    assert_eq!(c["data"], "normal");
}

#[test]
fn cli_linear_delta_preset_prints_the_worked_example() {
    let r = run(["--device", "cpu", "--preset", "linear-delta"]).success();
    let lines = r.epoch_lines();
    assert_eq!(lines[0], (0, 0.125), "{}", r.describe());
    assert_eq!(lines.len(), 10, "every 5th of 50 epochs: {}", r.describe());
    let (_, epochs, loss) = r.summary();
    assert_eq!(epochs, 50);
    assert!(loss < 1e-10, "{}", r.describe());
}

#[test]
fn cli_history_csv_has_a_header_and_one_line_per_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let h = tmp.path().join("history.csv");
    run([
        "--device", "cpu", "--quiet", "--layers", "12,7,3", "--batch", "5",
    ]
    .into_iter()
    .chain(["--epochs", "37", "--lr", "1e-3", "--history", p(&h)]))
    .success();
    let text = std::fs::read_to_string(&h).unwrap();
    assert_eq!(text.lines().count(), 38, "epochs + 1 lines: {text}");
    let losses = read_history_csv(&h);
    assert_eq!(losses.len(), 37);
    assert!(losses.iter().all(|l| l.is_finite() && *l > 0.0));
    // Exactly the in-process CPU backend's losses, written so that they read back bit for bit.
    let job = Job {
        layers: vec![12, 7, 3],
        batch: 5,
        lr: 1e-3,
        epochs: 37,
        ..Job::default()
    };
    let want = CpuBackend::new(&job, &HostState::seeded(&job))
        .run(37)
        .unwrap();
    let got: Vec<f32> = losses.iter().map(|&l| l as f32).collect();
    assert_eq!(got, want);
}

#[test]
fn cli_summary_json_has_device_config_losses_and_timings() {
    let tmp = tempfile::tempdir().unwrap();
    let (j, h) = (tmp.path().join("run.json"), tmp.path().join("h.csv"));
    let r = run(SMALL
        .iter()
        .copied()
        .chain(["--device", "cpu", "--seed", "3", "--log-every", "10"])
        .chain(["--loss", "mse", "--init-scheme", "constant:0.25"])
        .chain(["--summary-json", p(&j), "--history", p(&h)]))
    .success();
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&j).unwrap())
        .expect("--summary-json is valid JSON");
    for key in [
        "tool",
        "version",
        "device",
        "config",
        "epochs_run",
        "final_loss",
        "losses",
        "timings",
        "dispatches_per_epoch",
        "submits",
        "diverged_at",
    ] {
        assert!(v.get(key).is_some(), "summary JSON lacks `{key}`: {v:#}");
    }
    assert_eq!(v["tool"], "gpu-train");
    assert_eq!(v["device"]["kind"], "cpu");
    for key in ["name", "device_type", "backend", "driver"] {
        assert!(v["device"][key].is_string(), "device.{key}: {v:#}");
    }
    let c = &v["config"];
    assert_eq!(c["layers"], serde_json::json!([30, 20, 4]));
    assert_eq!(c["batch"], 9);
    assert_eq!(c["epochs"], 25);
    assert_eq!(c["seed"], 3);
    assert_eq!(c["log_every"], 10);
    assert_eq!(c["loss"], "mse");
    assert_eq!(c["activation"], "relu");
    assert_eq!(c["init_scheme"], "constant:0.25");
    assert!((c["lr"].as_f64().unwrap() - 1e-4).abs() < 1e-10);
    assert_eq!(v["epochs_run"], 25);
    assert!(v["diverged_at"].is_null());
    for key in ["setup_s", "train_s", "epochs_per_s", "gflops"] {
        let t = v["timings"][key].as_f64();
        assert!(t.is_some_and(|t| t >= 0.0), "timings.{key}: {v:#}");
    }
    let losses: Vec<f64> = v["losses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_f64().unwrap())
        .collect();
    assert_eq!(losses.len(), 25);
    assert_eq!(v["final_loss"].as_f64(), losses.last().copied());
    // The JSON, the CSV and the printed lines tell the same story.
    let csv = read_history_csv(&h);
    assert_eq!(csv.len(), losses.len());
    for (a, b) in csv.iter().zip(&losses) {
        assert_eq!(*a as f32, *b as f32);
    }
    let printed = r.epoch_lines();
    assert_eq!(
        printed.iter().map(|&(e, _)| e).collect::<Vec<_>>(),
        vec![0, 10, 20]
    );
    for (e, l) in printed {
        assert!((l - losses[e]).abs() <= 1e-6 * losses[e], "epoch {e}");
    }
}

#[test]
fn cli_save_final_writes_the_trained_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("final");
    run([
        "--device", "cpu", "--quiet", "--layers", "11,9,6,2", "--batch", "4",
    ]
    .into_iter()
    .chain(["--epochs", "12", "--lr", "1e-3", "--save-final", p(&dir)]))
    .success();
    let job = Job {
        layers: vec![11, 9, 6, 2],
        batch: 4,
        lr: 1e-3,
        epochs: 12,
        ..Job::default()
    };
    let state = HostState::seeded(&job);
    let mut cpu = CpuBackend::new(&job, &state);
    cpu.run(12).unwrap();
    let want = cpu.read_params().unwrap();
    for (l, w) in want.weights.iter().enumerate() {
        let got: Matrix = npy::read_matrix(&dir.join(format!("w{}.npy", l + 1))).unwrap();
        assert_eq!(got.shape(), job.weight_shape(l));
        assert_eq!(&got, w, "w{}.npy holds the trained weights", l + 1);
        assert_ne!(
            got,
            state.weights[l],
            "w{}.npy holds the initial weights",
            l + 1
        );
    }
    assert!(!dir.join("w4.npy").exists());
    assert!(
        !dir.join("x.npy").exists(),
        "--save-final writes weights only"
    );
}

/// A learning rate far too high: exit 3, the message names the epoch and suggests a lower rate,
/// and the history and summary are still written, up to the first non-finite loss. Returns the
/// losses.
fn check_divergence(device: &str) -> Vec<f64> {
    let tmp = tempfile::tempdir().unwrap();
    let (h, j) = (tmp.path().join("h.csv"), tmp.path().join("s.json"));
    let r = run([
        "--device",
        device,
        "--lr",
        "1e3",
        "--epochs",
        "50",
        "--history",
        p(&h),
        "--summary-json",
        p(&j),
    ]);
    assert_eq!(r.code, Some(3), "{}", r.describe());
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&j).unwrap()).unwrap();
    assert_eq!(v["device"]["kind"], device, "ran on the device asked for");
    let epoch = v["diverged_at"]
        .as_u64()
        .unwrap_or_else(|| panic!("diverged_at: {v:#}")) as usize;
    assert!(
        r.stderr.contains(&format!("at epoch {epoch}")),
        "message names the epoch {epoch}: {}",
        r.describe()
    );
    assert!(
        r.stderr.contains("--lr") && r.stderr.contains("learning rate"),
        "message suggests a lower learning rate: {}",
        r.describe()
    );
    // The history is still written, up to and including the non-finite loss.
    let losses = read_history_csv(&h);
    assert_eq!(losses.len(), epoch + 1, "history lines");
    assert!(!losses[epoch].is_finite());
    assert!(losses[..epoch].iter().all(|l| l.is_finite()));
    assert_eq!(v["epochs_run"], epoch + 1);
    losses
}

#[test]
fn cli_divergence_on_cpu_exits_3_names_the_epoch_and_suggests_a_lower_lr() {
    check_divergence("cpu");
}

/// The GPU reads losses back only at log points; it must still stop at the first non-finite one.
#[test]
fn cli_divergence_on_gpu_exits_3_names_the_epoch_and_suggests_a_lower_lr() {
    if gpu_or_skip().is_none() {
        return;
    }
    let gpu = check_divergence("gpu");
    let cpu = check_divergence("cpu");
    assert_eq!(gpu.len(), cpu.len(), "both diverge at the same epoch");
}

// ---------------------------------------------------------------------------------------------
// Bad input: exit 2, a message on stderr naming what is wrong, no panic.

#[track_caller]
fn assert_bad_input(r: &Run, needles: &[&str]) {
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

macro_rules! bad_flag {
    ($name:ident, [$($arg:expr),*], [$($needle:expr),*]) => {
        #[test]
        fn $name() {
            let r = run(["--device", "cpu", $($arg),*]);
            assert_bad_input(&r, &[$($needle),*]);
        }
    };
}

bad_flag!(
    bad_layers_zero_width_exits_2,
    ["--layers", "1000,0,10"],
    ["--layers", "0"]
);
bad_flag!(
    bad_layers_not_a_number_exits_2,
    ["--layers", "abc"],
    ["--layers", "abc"]
);
bad_flag!(
    bad_layers_single_width_exits_2,
    ["--layers", "5"],
    ["--layers", "two"]
);
bad_flag!(
    bad_layers_empty_width_exits_2,
    ["--layers", "10,,3"],
    ["--layers"]
);
bad_flag!(bad_batch_zero_exits_2, ["--batch", "0"], ["--batch"]);
bad_flag!(
    bad_batch_fraction_exits_2,
    ["--batch", "1.5"],
    ["--batch", "1.5"]
);
bad_flag!(bad_epochs_zero_exits_2, ["--epochs", "0"], ["--epochs"]);
bad_flag!(
    bad_epochs_not_a_number_exits_2,
    ["--epochs", "x"],
    ["--epochs", "x"]
);
bad_flag!(
    bad_epochs_negative_exits_2,
    ["--epochs", "-5"],
    ["--epochs", "-5"]
);
bad_flag!(bad_lr_nan_exits_2, ["--lr", "nan"], ["--lr"]);
bad_flag!(bad_lr_negative_exits_2, ["--lr", "-1"], ["--lr", "-1"]);
bad_flag!(
    bad_lr_negative_with_equals_exits_2,
    ["--lr=-1"],
    ["--lr", "-1"]
);
bad_flag!(bad_lr_zero_exits_2, ["--lr", "0"], ["--lr"]);
bad_flag!(bad_lr_inf_exits_2, ["--lr", "inf"], ["--lr"]);
bad_flag!(
    bad_lr_not_a_number_exits_2,
    ["--lr", "fast"],
    ["--lr", "fast"]
);
bad_flag!(bad_log_every_exits_2, ["--log-every", "x"], ["--log-every"]);
bad_flag!(unknown_flag_exits_2, ["--frobnicate"], ["--frobnicate"]);
bad_flag!(
    unknown_preset_exits_2_listing_the_presets,
    ["--preset", "resnet"],
    [
        "--preset",
        "resnet",
        "tutorial, bias-sgd, adam, dynamic, linear-delta, l1"
    ]
);
bad_flag!(
    fixed_data_preset_with_other_sizes_exits_2,
    ["--preset", "linear-delta", "--batch", "4"],
    ["--preset", "fit"]
);
bad_flag!(
    unknown_optimizer_exits_2_listing_the_optimizers,
    ["--optimizer", "rmsprop"],
    ["--optimizer", "rmsprop", "sgd, momentum, adam"]
);
bad_flag!(
    momentum_of_one_exits_2,
    ["--optimizer", "momentum", "--momentum", "1"],
    ["--momentum", "[0, 1)"]
);
bad_flag!(
    negative_momentum_exits_2,
    ["--optimizer", "momentum", "--momentum", "-0.5"],
    ["--momentum", "[0, 1)"]
);
bad_flag!(
    beta1_out_of_range_exits_2,
    ["--optimizer", "adam", "--beta1", "1.5"],
    ["--beta1", "[0, 1)"]
);
bad_flag!(
    beta2_of_one_exits_2,
    ["--optimizer", "adam", "--beta2", "1"],
    ["--beta2", "[0, 1)"]
);
bad_flag!(
    eps_zero_exits_2,
    ["--optimizer", "adam", "--eps", "0"],
    ["--eps", "> 0"]
);
bad_flag!(
    eps_not_a_number_exits_2,
    ["--optimizer", "adam", "--eps", "tiny"],
    ["--eps", "tiny"]
);
bad_flag!(
    nesterov_without_momentum_optimizer_exits_2,
    ["--optimizer", "adam", "--nesterov"],
    ["--nesterov", "momentum"]
);
bad_flag!(
    unknown_loss_exits_2_listing_the_losses,
    ["--loss", "huber"],
    ["--loss", "huber", "sse, mse, half-sse, l1, cross-entropy"]
);
bad_flag!(
    unknown_activation_exits_2_listing_the_activations,
    ["--activation", "softplus"],
    [
        "--activation",
        "softplus",
        "relu, leaky-relu[:SLOPE], tanh, sigmoid, gelu, none"
    ]
);
bad_flag!(
    unknown_init_scheme_exits_2_listing_the_schemes,
    ["--init-scheme", "orthogonal"],
    [
        "--init-scheme",
        "orthogonal",
        "normal, torch, xavier, kaiming, constant:<value>"
    ]
);
bad_flag!(
    init_scheme_constant_without_a_number_exits_2,
    ["--init-scheme", "constant:"],
    ["--init-scheme", "constant:0.5"]
);
bad_flag!(
    init_scheme_constant_not_finite_exits_2,
    ["--init-scheme", "constant:nan"],
    ["--init-scheme", "finite"]
);

bad_flag!(
    dynamic_depth_with_one_hidden_layer_exits_2,
    ["--dynamic-depth", "3"],
    [
        "--dynamic-depth",
        "hidden -> hidden",
        "1000,100,10 has 1 hidden layer"
    ]
);
bad_flag!(
    dynamic_depth_without_hidden_layers_exits_2,
    ["--dynamic-depth", "3", "--layers", "1000,10"],
    ["--dynamic-depth", "0 hidden layers"]
);
bad_flag!(
    dynamic_depth_with_unequal_last_hidden_widths_exits_2,
    ["--dynamic-depth", "3", "--layers", "1000,100,50,10"],
    ["--dynamic-depth", "100 -> 50"]
);
bad_flag!(
    dynamic_depth_zero_exits_2,
    ["--preset", "dynamic", "--dynamic-depth", "0"],
    ["--dynamic-depth", "1..=32"]
);
bad_flag!(
    dynamic_depth_not_a_number_exits_2,
    ["--preset", "dynamic", "--dynamic-depth", "-1"],
    ["--dynamic-depth", "`-1`"]
);

/// The `dynamic` preset end to end: the description names the shared layer, the files hold every
/// layer (w2 is the shared one), the summary's config records the maximum depth, and the
/// reported GFLOP/s count each epoch's drawn depth.
#[test]
fn cli_dynamic_preset_trains_and_writes_every_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, j) = (tmp.path().join("final"), tmp.path().join("run.json"));
    let r = run([
        "--device",
        "cpu",
        "--preset",
        "dynamic",
        "--epochs",
        "60",
        "--save-final",
        p(&dir),
        "--summary-json",
        p(&j),
    ])
    .success();
    assert!(
        r.stdout.contains("w2 shared and run 0-3 times per epoch"),
        "{}",
        r.describe()
    );
    let lines = r.epoch_lines();
    assert_eq!(lines.len(), 2, "{}", r.describe());
    let (_, epochs, last) = r.summary();
    assert_eq!(epochs, 60);
    assert!(last < lines[0].1 / 2.0, "must train: {}", r.describe());
    for (name, shape) in [("w1", [1000, 100]), ("w2", [100, 100]), ("w3", [100, 10])] {
        let m = npy::read_matrix(&dir.join(format!("{name}.npy"))).unwrap();
        assert_eq!(m.shape(), shape, "{name}");
    }
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&j).unwrap()).unwrap();
    assert_eq!(v["config"]["dynamic"]["max"], 3, "{v:#}");
    assert_eq!(
        v["config"]["layers"],
        serde_json::json!([1000, 100, 100, 10])
    );
}

/// `--init` gives the widths `--dynamic-depth` needs: a dynamic run set up from files (without
/// `--layers`) starts from them, and files without a shared layer are refused.
#[test]
fn cli_dynamic_depth_takes_its_widths_from_init_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("init");
    let small = ["--layers", "12,6,6,3", "--batch", "5", "--epochs", "3"];
    let base = ["--device", "cpu", "--preset", "dynamic", "--quiet"];
    let a = run(base.iter().chain(&small).chain(&["--save-init", p(&dir)])).success();
    let b = run(base.iter().chain(&["--epochs", "3", "--init", p(&dir)])).success();
    assert_eq!(
        a.summary().2,
        b.summary().2,
        "{}\n{}",
        a.describe(),
        b.describe()
    );
    let flat = tmp.path().join("flat");
    run([
        "--device", "cpu", "--layers", "12,6,3", "--batch", "5", "--epochs", "1",
    ]
    .iter()
    .chain(&["--quiet", "--save-init", p(&flat)]))
    .success();
    let r = run([
        "--device",
        "cpu",
        "--dynamic-depth",
        "2",
        "--init",
        p(&flat),
    ]);
    assert_bad_input(&r, &["--dynamic-depth", "12,6,3"]);
}

#[test]
fn bad_device_name_exits_2_and_lists_the_choices() {
    let r = run(["--device", "bogus", "--epochs", "1"]);
    assert_bad_input(&r, &["bogus", "auto, cpu, gpu"]);
}

/// With no adapter at all (wgpu narrowed to DX12, which only Windows has), `--device gpu` says so
/// and names the package that gives a software adapter; `auto` trains on the CPU with a notice.
#[cfg(not(windows))]
#[test]
fn device_gpu_without_any_adapter_exits_2_and_suggests_lavapipe() {
    let none = [("WGPU_BACKEND", "dx12")];
    let r = run_env(["--device", "gpu", "--epochs", "1"], &none);
    assert_bad_input(
        &r,
        &["--device gpu", "no GPU adapters", "mesa-vulkan-drivers"],
    );
    let r = run_env(["--epochs", "1", "--quiet"], &none).success();
    assert!(
        r.stderr.contains("training on the CPU"),
        "auto must say it fell back: {}",
        r.describe()
    );
    assert_eq!(r.summary().0, "cpu");
}

/// A matrix beyond the adapter's texture limit is refused before training, naming the matrix and
/// the limit (w1 here: one more 4-row block than the limit allows).
#[test]
fn job_beyond_the_adapters_texture_limit_exits_2_naming_matrix_and_limit() {
    let Some(ctx) = gpu_or_skip() else { return };
    let rows = ctx.limits.max_texture_dimension_2d as usize + 4;
    let layers = format!("{rows},3");
    let r = run([
        "--device", "gpu", "--layout", "texels", "--layers", &layers, "--batch", "1", "--epochs",
        "1",
    ]);
    assert_bad_input(&r, &["w1", &rows.to_string(), "max_texture_dimension_2d"]);
    // The buffer layout has no texture-size ceiling: the same job trains.
    let r = run([
        "--device", "gpu", "--layout", "buffer", "--layers", &layers, "--batch", "1", "--epochs",
        "1", "--quiet",
    ]);
    r.success();
}

/// `--layout buffer` and `--layout texels` train the same job to the same trajectory (within the
/// parity tolerance), and the summary names the layout and the limits.
#[test]
fn cli_each_layout_trains_and_the_summary_names_it() {
    let Some(ctx) = gpu_or_skip() else { return };
    let auto = ctx.auto_layout().name();
    let dir = tempfile::tempdir().unwrap();
    let mut finals = Vec::new();
    for (layout, limits) in [
        ("buffer", "webgpu"),
        ("texels", "adapter"),
        ("auto", "adapter"),
    ] {
        let j = dir.path().join(format!("{layout}.json"));
        let r = run([
            "--device",
            "gpu",
            "--layout",
            layout,
            "--limits",
            limits,
            "--epochs",
            "60",
            "--quiet",
            "--summary-json",
            p(&j),
        ])
        .success();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&j).unwrap()).unwrap();
        let want = if layout == "auto" { auto } else { layout };
        assert_eq!(v["device"]["layout"], want, "{}", r.describe());
        assert_eq!(v["device"]["limits"], limits, "{}", r.describe());
        finals.push(r.summary().2);
    }
    let rel = (finals[0] - finals[1]).abs() / finals[1];
    assert!(rel < 1e-3, "final losses of the two layouts: {finals:?}");
    let same = if auto == "texels" {
        finals[1]
    } else {
        finals[0]
    };
    assert_eq!(finals[2], same, "auto is {auto} here");
}

/// A discrete GPU's plan forced on this adapter (`GPU_TRAIN_PLAN_AS=discrete`: the buffer layout,
/// at least 64 workgroups for every product of 1 MFLOP or more, shaders with bounds checks) trains
/// the default job like the CPU, and `--profile` reports the workgroups of each dispatch: the
/// default job's x·w1 (64x100x1000) runs split-K in 8 ranges, 64 workgroups, and its reduction;
/// xᵀ·g1 (1000x100x64) 4x4 blocks, 128 workgroups.
#[test]
fn cli_discrete_plan_forced_trains_and_profile_reports_workgroups() {
    if gpu_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("s.json");
    let plan = [("GPU_TRAIN_PLAN_AS", "discrete")];
    let args = [
        "--device",
        "gpu",
        "--profile",
        "--quiet",
        "--summary-json",
        p(&j),
    ];
    let r = run_env(args, &plan).success();
    assert!(r.stdout.contains("workgroups"), "{}", r.describe());
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&j).unwrap()).unwrap();
    assert_eq!(v["device"]["layout"], "buffer");
    let kernels = v["profile"]["kernels"].as_array().expect("profile kernels");
    let groups = |name: &str| {
        (kernels.iter())
            .find(|k| k["name"].as_str().is_some_and(|n| n.contains(name)))
            .and_then(|k| k["workgroups"].as_u64())
    };
    let x_w1 = "buffer splitk(8) Activate A·B 64x100x1000 [partial sums]";
    assert_eq!(groups(x_w1), Some(64), "{kernels:?}");
    assert!(groups("buffer splitk(8) Activate A·B 64x100x1000 [reduce]").is_some());
    assert_eq!(
        groups("buffer 4x4 Update Aᵀ·B 1000x100x64"),
        Some(128),
        "{kernels:?}"
    );
    let cpu = run(["--device", "cpu", "--quiet"]).success();
    let (g, c) = (r.summary().2, cpu.summary().2);
    let tol = 3e-3 * c.sqrt() + 1e-5 * c;
    assert!((g - c).abs() <= tol, "final loss GPU {g:e} CPU {c:e}");
}

bad_flag!(
    bad_layout_exits_2_and_lists_the_layouts,
    ["--layout", "tiles"],
    ["--layout", "auto", "texels", "buffer"]
);

bad_flag!(
    bad_limits_exits_2_and_lists_the_choices,
    ["--limits", "browser"],
    ["--limits", "adapter", "webgpu"]
);

#[test]
fn bad_device_index_exits_2() {
    let r = run(["--device", "99", "--epochs", "1"]);
    assert_bad_input(&r, &["99", "index"]);
}

/// A valid --init folder for the small job (seed 0), to be broken by each test.
fn init_dir() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    npy::save_state(tmp.path(), &HostState::seeded(&small_job())).unwrap();
    // Sanity: as written, it loads.
    npy::load_state(tmp.path()).unwrap();
    tmp
}

fn run_init(dir: &Path) -> Run {
    run(["--device", "cpu", "--epochs", "2", "--init", p(dir)])
}

/// A .npy file (format 1.0) with a header of our choosing and the given payload.
fn write_npy(path: &Path, descr: &str, shape: &[usize], payload: &[u8]) {
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

#[test]
fn init_missing_directory_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let r = run_init(&missing);
    assert_bad_input(&r, &["nope", "directory"]);
}

#[test]
fn init_without_w2_exits_2_naming_w2() {
    let tmp = init_dir();
    std::fs::remove_file(tmp.path().join("w2.npy")).unwrap();
    let r = run_init(tmp.path());
    assert_bad_input(&r, &["w2.npy"]);
}

#[test]
fn init_without_x_exits_2_naming_x() {
    let tmp = init_dir();
    std::fs::remove_file(tmp.path().join("x.npy")).unwrap();
    let r = run_init(tmp.path());
    assert_bad_input(&r, &["x.npy", "missing"]);
}

#[test]
fn init_with_wrong_shape_w1_exits_2_naming_file_and_shapes() {
    let tmp = init_dir();
    // x is [9, 30], so w1 must be [30, 20]; give it 29 rows.
    npy::write_matrix(&tmp.path().join("w1.npy"), &Matrix::zeros(29, 20)).unwrap();
    let r = run_init(tmp.path());
    assert_bad_input(&r, &["w1.npy", "[30, 20]", "[29, 20]"]);
}

#[test]
fn init_not_matching_explicit_layers_exits_2() {
    let tmp = init_dir();
    let r = run([
        "--device",
        "cpu",
        "--epochs",
        "2",
        "--layers",
        "30,20,5",
        "--batch",
        "9",
        "--init",
        p(tmp.path()),
    ]);
    assert_bad_input(&r, &["w2.npy", "[20, 5]", "[20, 4]", "--layers"]);
}

/// `--layers` that agree with the --init files, without `--batch`: the batch comes from the files
/// (the help says "[default: 64, or the row count of the --init files]"), so this must train.
#[test]
fn init_with_matching_layers_only_takes_the_batch_from_the_files() {
    let tmp = init_dir();
    let r = run([
        "--device",
        "cpu",
        "--quiet",
        "--epochs",
        "2",
        "--layers",
        "30,20,4",
        "--init",
        p(tmp.path()),
    ]);
    assert_eq!(r.code, Some(0), "{}", r.describe());
}

/// Likewise `--batch` that agrees with the files, without `--layers`.
#[test]
fn init_with_matching_batch_only_takes_the_layers_from_the_files() {
    let tmp = init_dir();
    let r = run([
        "--device",
        "cpu",
        "--quiet",
        "--epochs",
        "2",
        "--batch",
        "9",
        "--init",
        p(tmp.path()),
    ]);
    assert_eq!(r.code, Some(0), "{}", r.describe());
}

#[test]
fn init_with_integer_dtype_exits_2() {
    let tmp = init_dir();
    let payload: Vec<u8> = (0..30 * 20i64).flat_map(|v| v.to_le_bytes()).collect();
    write_npy(&tmp.path().join("w1.npy"), "<i8", &[30, 20], &payload);
    let r = run_init(tmp.path());
    assert_bad_input(&r, &["w1.npy", "dtype"]);
}

#[test]
fn init_with_garbage_bytes_exits_2() {
    let tmp = init_dir();
    std::fs::write(
        tmp.path().join("w1.npy"),
        b"this is not a numpy file at all",
    )
    .unwrap();
    let r = run_init(tmp.path());
    assert_bad_input(&r, &["w1.npy", ".npy"]);
}

#[test]
fn init_with_truncated_data_exits_2() {
    let tmp = init_dir();
    write_npy(&tmp.path().join("w1.npy"), "<f4", &[30, 20], &[0u8; 40]);
    let r = run_init(tmp.path());
    assert_bad_input(&r, &["w1.npy"]);
}

#[test]
fn init_with_1d_array_exits_2() {
    let tmp = init_dir();
    write_npy(&tmp.path().join("y.npy"), "<f4", &[36], &[0u8; 36 * 4]);
    let r = run_init(tmp.path());
    assert_bad_input(&r, &["y.npy", "2-D"]);
}

/// An output file in a directory that does not exist is bad input (exit 2), and is reported
/// before the training, not after it.
#[test]
fn history_into_missing_directory_exits_2_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let h = tmp.path().join("no").join("such").join("h.csv");
    let r = run(SMALL
        .iter()
        .copied()
        .chain(["--device", "cpu", "--history", p(&h)]));
    assert_bad_input(&r, &["h.csv", "does not exist"]);
}

#[test]
fn summary_json_into_missing_directory_exits_2_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let j = tmp.path().join("no").join("s.json");
    let r = run(SMALL
        .iter()
        .copied()
        .chain(["--device", "cpu", "--summary-json", p(&j)]));
    assert_bad_input(&r, &["s.json", "does not exist"]);
}

/// `--save-final` under a regular file cannot be created: like the other outputs, that should be
/// reported as bad input before training rather than after the whole run.
#[test]
fn save_final_under_a_file_exits_2_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let target = file.join("final");
    let r = run(SMALL
        .iter()
        .copied()
        .chain(["--device", "cpu", "--save-final", p(&target)]));
    assert_bad_input(&r, &["final"]);
}

/// A small dataset (150 rows, 6 inputs, 2 targets) as x.npy/y.npy (y in f64) and as one CSV with
/// a header, the same numbers in both.
fn dataset_files(dir: &Path) -> (Matrix, Matrix) {
    let mut r = common::rng(77);
    let x = Matrix::from_vec(150, 6, common::randn(&mut r, 900));
    let y = Matrix::from_vec(150, 2, common::randn(&mut r, 300));
    npy::write_matrix(&dir.join("x.npy"), &x).unwrap();
    let y64: Vec<u8> = y
        .data
        .iter()
        .flat_map(|&v| (v as f64).to_le_bytes())
        .collect();
    write_npy(&dir.join("y.npy"), "<f8", &[150, 2], &y64);
    let mut csv = String::from("a,b,c,d,e,f,t1,t2\n");
    for i in 0..150 {
        let row: Vec<String> = (x.data[i * 6..][..6].iter().chain(&y.data[i * 2..][..2]))
            .map(|v| v.to_string())
            .collect();
        csv.push_str(&row.join(","));
        csv.push('\n');
    }
    std::fs::write(dir.join("d.csv"), csv).unwrap();
    (x, y)
}

/// `--x/--y` and `--data --targets` train the same net on the same rows in mini-batches (the
/// summary records the dataset), with the widths taken from the files.
#[test]
fn cli_dataset_from_npy_and_csv_trains_in_minibatches_alike() {
    let tmp = tempfile::tempdir().unwrap();
    dataset_files(tmp.path());
    let common = [
        "--device",
        "cpu",
        "--batch",
        "32",
        "--epochs",
        "4",
        "--lr",
        "1e-3",
        "--init-scheme",
        "torch",
    ];
    let j = tmp.path().join("run.json");
    let (x, y) = (tmp.path().join("x.npy"), tmp.path().join("y.npy"));
    let a = run(common
        .iter()
        .chain(&["--x", p(&x), "--y", p(&y), "--summary-json", p(&j)]))
    .success();
    assert!(
        a.stdout
            .contains("150 rows in batches of 32 (shuffled) x [6 -> 100 -> 2]"),
        "{}",
        a.describe()
    );
    let csv = tmp.path().join("d.csv");
    let b = run(common.iter().chain(&["--data", p(&csv), "--targets", "2"])).success();
    assert_eq!(
        a.summary().2,
        b.summary().2,
        "{}\n{}",
        a.describe(),
        b.describe()
    );
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&j).unwrap()).unwrap();
    assert_eq!(v["config"]["rows"], 150, "{v:#}");
    assert_eq!(v["config"]["batch"], 32);
    assert!(v["config"]["data"]["x_file"]
        .as_str()
        .unwrap()
        .ends_with("x.npy"));
    // --no-shuffle changes the order, so the trajectory.
    let c = run(common
        .iter()
        .chain(&["--x", p(&x), "--y", p(&y), "--no-shuffle"]))
    .success();
    assert_ne!(a.summary().2, c.summary().2);
    assert!(c.stdout.contains("(in order)"), "{}", c.describe());
}

/// Every kind of bad dataset: exit 2, a message naming the file and what is wrong with it.
#[test]
fn cli_bad_datasets_exit_2_naming_the_file_and_the_fault() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    dataset_files(dir);
    let (x, y) = (dir.join("x.npy"), dir.join("y.npy"));
    let train = |extra: &[&str]| {
        let base = ["--device", "cpu", "--epochs", "1"];
        run(base.iter().chain(extra))
    };
    let xy = |xf: &Path, yf: &Path| train(&["--x", p(xf), "--y", p(yf)]);
    let bad = dir.join("bad.npy");
    std::fs::write(&bad, b"hello, not numpy").unwrap();
    assert_bad_input(&xy(&bad, &y), &["bad.npy", "not a valid .npy"]);
    write_npy(&bad, "<i4", &[150, 6], &[0u8; 150 * 6 * 4]);
    assert_bad_input(&xy(&bad, &y), &["bad.npy", "dtype"]);
    write_npy(&bad, "<f4", &[150, 6, 1], &[0u8; 150 * 6 * 4]);
    assert_bad_input(&xy(&bad, &y), &["bad.npy", "2-D"]);
    write_npy(&bad, "<f4", &[150, 6], &[0u8; 150 * 6 * 4]);
    let mut bytes = std::fs::read(&bad).unwrap();
    let at = bytes.windows(5).position(|w| w == b"False").unwrap();
    bytes[at..at + 5].copy_from_slice(b"True ");
    std::fs::write(&bad, bytes).unwrap();
    assert_bad_input(&xy(&bad, &y), &["bad.npy", "Fortran"]);
    write_npy(&bad, "<f4", &[149, 2], &[0u8; 149 * 2 * 4]);
    assert_bad_input(&xy(&x, &bad), &["bad.npy", "149 rows", "150"]);
    let mut nan = vec![0f32; 150 * 6];
    nan[2 * 6 + 1] = f32::NAN;
    npy::write_matrix(&bad, &Matrix::from_vec(150, 6, nan)).unwrap();
    assert_bad_input(&xy(&bad, &y), &["bad.npy", "row 2, column 1", "NaN"]);
    assert_bad_input(&xy(&dir.join("missing.npy"), &y), &["missing.npy"]);
    assert_bad_input(&train(&["--x", p(&x)]), &["--x", "--y"]);
    assert_bad_input(&train(&["--y", p(&y)]), &["--y", "--x"]);
    assert_bad_input(
        &train(&["--x", p(&x), "--y", p(&y), "--layers", "5,100,2"]),
        &["--layers", "x.npy", "6 inputs"],
    );
    assert_bad_input(
        &train(&["--x", p(&x), "--y", p(&y), "--rows", "10"]),
        &["--rows"],
    );
    let csv = dir.join("bad.csv");
    std::fs::write(&csv, "1,2,3\n4,5,6\n7,8\n").unwrap();
    assert_bad_input(
        &train(&["--data", p(&csv), "--targets", "1"]),
        &["bad.csv", "line 3"],
    );
    std::fs::write(&csv, "1,2,3\n4,five,6\n").unwrap();
    assert_bad_input(
        &train(&["--data", p(&csv), "--targets", "1"]),
        &["bad.csv", "line 2, column 2", "five"],
    );
    assert_bad_input(&train(&["--data", p(&csv)]), &["--targets"]);
    assert_bad_input(&train(&["--targets", "1"]), &["--targets", "--data"]);
    assert_bad_input(
        &train(&["--data", p(&csv), "--targets", "1", "--x", p(&x)]),
        &["--data", "--x"],
    );
}

/// `--rows` generates a dataset of that many rows, trained in mini-batches.
#[test]
fn cli_rows_trains_a_generated_dataset_in_minibatches() {
    let r = run([
        "--device", "cpu", "--rows", "100", "--batch", "30", "--layers", "8,4,2", "--epochs", "3",
    ])
    .success();
    assert!(
        r.stdout.contains("100 rows in batches of 30"),
        "{}",
        r.describe()
    );
    let r = run([
        "--device", "cpu", "--rows", "10", "--batch", "30", "--epochs", "1",
    ]);
    assert_bad_input(&r, &["--batch", "30", "10 rows"]);
}

/// `--history` in JSON, `--plot` as SVG and PNG, and `gpu-train plot` overlaying a CSV and a JSON
/// history: valid files, one curve per run.
#[test]
fn cli_history_json_plots_and_the_plot_command() {
    let tmp = tempfile::tempdir().unwrap();
    let f = |name: &str| tmp.path().join(name);
    let small = [
        "--device", "cpu", "--quiet", "--layers", "12,7,3", "--batch", "5",
    ];
    run(small.iter().chain(&[
        "--epochs",
        "30",
        "--history",
        p(&f("a.json")),
        "--plot",
        p(&f("a.svg")),
    ]))
    .success();
    run(small.iter().chain(&[
        "--epochs",
        "20",
        "--lr",
        "1e-3",
        "--history",
        p(&f("b.csv")),
        "--plot",
        p(&f("b.png")),
    ]))
    .success();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(f("a.json")).unwrap()).unwrap();
    assert_eq!(v["loss"].as_array().unwrap().len(), 30, "{v:#}");
    assert_eq!(v["device"], "cpu");
    assert_eq!(read_history_csv(&f("b.csv")).len(), 20);
    let svg = std::fs::read_to_string(f("a.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    let png = std::fs::read(f("b.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG signature");
    let r = run([
        "plot",
        p(&f("a.json")),
        p(&f("b.csv")),
        "-o",
        p(&f("both.svg")),
    ])
    .success();
    assert!(r.stdout.contains("both.svg"), "{}", r.describe());
    let both = std::fs::read_to_string(f("both.svg")).unwrap();
    assert_eq!(
        both.matches(r#"stroke-width="2" points="#).count(),
        4,
        "two curves, two legend marks"
    );
    assert!(
        both.contains("a (cpu)") && both.contains(">\nb\n<"),
        "labelled by file"
    );
    // Bad input: a file that is not a history, an output in a missing directory.
    std::fs::write(f("junk.csv"), "hello\n").unwrap();
    let r = run(["plot", p(&f("junk.csv")), "-o", p(&f("x.svg"))]);
    assert_bad_input(&r, &["junk.csv", "epoch,loss"]);
    let r = run(small
        .iter()
        .chain(&["--epochs", "2", "--plot", p(&f("no/such/dir/p.svg"))]));
    assert_bad_input(&r, &["p.svg", "does not exist"]);
}

/// `--save` then `--resume` with the same flags continues the run: the resumed history numbers
/// its epochs on, and its losses are those of an uninterrupted run, bit for bit;
/// `--checkpoint-every` leaves a checkpoint of the last multiple.
#[test]
fn cli_save_resume_and_checkpoint_every() {
    let tmp = tempfile::tempdir().unwrap();
    let f = |name: &str| tmp.path().join(name);
    let job = [
        "--device",
        "cpu",
        "--quiet",
        "--layers",
        "12,7,3",
        "--rows",
        "30",
        "--batch",
        "8",
        "--optimizer",
        "momentum",
        "--lr",
        "1e-3",
        "--init-scheme",
        "torch",
    ];
    let with = |extra: &[&str]| run(job.iter().chain(extra)).success();
    with(&["--epochs", "9", "--history", p(&f("whole.csv"))]);
    with(&["--epochs", "4", "--save", p(&f("ck.safetensors"))]);
    assert!(
        f("ck.optim.safetensors").exists(),
        "momentum's state beside the model"
    );
    with(&[
        "--epochs",
        "9",
        "--resume",
        p(&f("ck.safetensors")),
        "--history",
        p(&f("rest.csv")),
        "--checkpoint-every",
        "2",
        "--save",
        p(&f("ck2.safetensors")),
    ]);
    let whole = std::fs::read_to_string(f("whole.csv")).unwrap();
    let rest = std::fs::read_to_string(f("rest.csv")).unwrap();
    let tail: Vec<&str> = whole.lines().skip(5).collect();
    assert_eq!(rest.lines().skip(1).collect::<Vec<_>>(), tail, "{rest}");
    assert!(rest.lines().nth(1).unwrap().starts_with("4,"), "{rest}");
    // Resuming a finished checkpoint, or with another optimizer, or without --save for
    // --checkpoint-every: exit 2.
    let r = run(job
        .iter()
        .chain(&["--epochs", "9", "--resume", p(&f("ck2.safetensors"))]));
    assert_bad_input(&r, &["--epochs", "already trained 9 epochs"]);
    let mut adam = job.to_vec();
    adam[10] = "adam";
    let r = run(adam
        .iter()
        .chain(&["--epochs", "9", "--resume", p(&f("ck.safetensors"))]));
    assert_bad_input(&r, &["--optimizer", "momentum"]);
    // Or with another activation or loss.
    for (flag, other, saved) in [("--activation", "tanh", "relu"), ("--loss", "mse", "sse")] {
        let r = run(job.iter().chain(&[
            "--epochs",
            "9",
            flag,
            other,
            "--resume",
            p(&f("ck.safetensors")),
        ]));
        assert_bad_input(&r, &[flag, saved, other]);
    }
    let r = run(job
        .iter()
        .chain(&["--epochs", "9", "--checkpoint-every", "2"]));
    assert_bad_input(&r, &["--checkpoint-every", "--save"]);
}

/// Checkpoints that do not fit the flags, or are not checkpoints at all: exit 2 naming the file
/// and, for a shape, the tensor.
#[test]
fn cli_bad_checkpoints_exit_2_naming_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let ck = tmp.path().join("ck.safetensors");
    let job = ["--device", "cpu", "--quiet", "--batch", "5"];
    let layers = ["--layers", "12,7,3"];
    let first = job.iter().chain(&layers);
    run(first.chain(&["--epochs", "2", "--bias", "--save", p(&ck)])).success();
    let resume_with = |layers: &str, extra: &[&str]| {
        let base = ["--epochs", "4", "--layers", layers, "--resume", p(&ck)];
        run(job.iter().chain(&base).chain(extra))
    };
    let resume = |extra: &[&str]| resume_with("12,7,3", extra);
    let r = resume_with("12,8,3", &["--bias"]);
    assert_bad_input(&r, &["ck.safetensors", "0.weight", "[8, 12]", "[7, 12]"]);
    let r = resume(&[]);
    assert_bad_input(&r, &["ck.safetensors", "0.bias"]);
    // Another activation: refused before the tensors are looked at (their names would differ
    // too: "1.weight" without the ReLU modules).
    let r = resume(&["--bias", "--activation", "none"]);
    assert_bad_input(&r, &["ck.safetensors", "--activation", "`relu`"]);
    let bytes = std::fs::read(&ck).unwrap();
    std::fs::write(&ck, &bytes[..bytes.len() - 10]).unwrap();
    let r = resume(&["--bias"]);
    assert_bad_input(&r, &["ck.safetensors", "truncated or corrupt"]);
    std::fs::write(&ck, b"not a checkpoint").unwrap();
    assert_bad_input(&resume(&["--bias"]), &["ck.safetensors"]);
    assert_bad_input(&resume(&["--bias", "--resume"]), &["--resume"]);
}

/// SIGINT in the middle of a run: the epochs in flight finish, the checkpoint and the history are
/// written (complete, no temporary files left), and the exit code is 130; the checkpoint resumes.
#[cfg(unix)]
#[test]
fn cli_sigint_writes_a_checkpoint_and_the_history_and_exits_130() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().unwrap();
    let f = |name: &str| tmp.path().join(name);
    let args = [
        "--device",
        "cpu",
        "--layers",
        "50,40,3",
        "--rows",
        "200",
        "--batch",
        "20",
        "--epochs",
        "100000000",
        "--log-every",
        "100",
        "--lr",
        "1e-4",
        "--init-scheme",
        "torch",
    ];
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gpu-train"))
        .args(args)
        .args([
            "--save",
            p(&f("ck.safetensors")),
            "--history",
            p(&f("h.csv")),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // Wait until it trains (a few logged epochs), then interrupt.
    let mut seen = 0;
    for line in lines.by_ref() {
        if line.unwrap().starts_with("epoch ") {
            seen += 1;
            if seen == 3 {
                break;
            }
        }
    }
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let rest: Vec<String> = lines.map_while(|l| l.ok()).collect();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}\n{rest:?}");
    assert!(
        stderr.contains("interrupted after epoch") && stderr.contains("--resume"),
        "{stderr}"
    );
    let history = read_history_csv(&f("h.csv"));
    assert!(
        history.len() >= 201,
        "{} epochs in the history",
        history.len()
    );
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The checkpoint is at the interrupted epoch and resumes.
    let epochs = history.len().to_string();
    let more = (history.len() + 3).to_string();
    let mut resume: Vec<&str> = args.to_vec();
    resume[9] = &more;
    let r = run(resume
        .iter()
        .chain(&["--quiet", "--resume", p(&f("ck.safetensors"))]))
    .success();
    assert_eq!(r.summary().1, 3, "{} then 3 more: {}", epochs, r.describe());
}

/// One-hot classes from a seeded linear rule: 300 rows, 6 inputs, 3 classes.
fn classes(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let mut r = common::rng(91);
    let x = Matrix::from_vec(300, 6, common::randn(&mut r, 1800));
    let w = common::randn(&mut r, 18);
    let mut y = Matrix::zeros(300, 3);
    for i in 0..300 {
        let s: Vec<f32> = (0..3)
            .map(|c| (0..6).map(|k| x.data[i * 6 + k] * w[k * 3 + c]).sum())
            .collect();
        let best = (0..3).fold(0, |b, c| if s[c] > s[b] { c } else { b });
        y.data[i * 3 + best] = 1.0;
    }
    let (xp, yp) = (dir.join("cx.npy"), dir.join("cy.npy"));
    npy::write_matrix(&xp, &x).unwrap();
    npy::write_matrix(&yp, &y).unwrap();
    (xp, yp)
}

/// `--val-split` holds out rows and reports their loss and accuracy on the log lines, in the
/// history and at the end; `eval` scores the saved checkpoint on the whole set, `predict` writes
/// its outputs, which agree with `eval`'s accuracy; bad input to both exits 2.
#[test]
fn cli_validation_eval_and_predict() {
    let tmp = tempfile::tempdir().unwrap();
    let f = |name: &str| tmp.path().join(name);
    let (x, y) = classes(tmp.path());
    let r = run([
        "--device",
        "cpu",
        "--x",
        p(&x),
        "--y",
        p(&y),
        "--layers",
        "6,16,3",
        "--batch",
        "20",
        "--epochs",
        "40",
        "--log-every",
        "10",
        "--loss",
        "mse",
        "--optimizer",
        "adam",
        "--lr",
        "1e-2",
        "--bias",
        "--init-scheme",
        "torch",
        "--val-split",
        "0.25",
        "--save",
        p(&f("ck.safetensors")),
        "--history",
        p(&f("h.csv")),
    ])
    .success();
    assert!(
        r.stdout.contains("225 rows in batches of 20"),
        "{}",
        r.describe()
    );
    let logged: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("epoch"))
        .collect();
    assert_eq!(logged.len(), 4);
    assert!(
        logged
            .iter()
            .all(|l| l.contains("val_loss") && l.contains("val_acc")),
        "{logged:?}"
    );
    let last = r
        .stdout
        .lines()
        .find(|l| l.starts_with("held-out loss"))
        .unwrap();
    let acc: f64 = last
        .split("accuracy ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(acc > 0.8, "the classes are linear: {last}");
    let h = std::fs::read_to_string(f("h.csv")).unwrap();
    // One-hot targets: the training accuracy too, at the same epochs.
    assert!(
        h.starts_with("epoch,loss,accuracy,val_loss,val_accuracy\n0,"),
        "{h}"
    );
    assert_eq!(
        h.lines().filter(|l| !l.ends_with(",,,")).count(),
        5,
        "header + 4 scored: {h}"
    );
    let e = run([
        "eval",
        "--checkpoint",
        p(&f("ck.safetensors")),
        "--x",
        p(&x),
        "--y",
        p(&y),
    ])
    .success();
    assert!(
        e.stdout.contains("rows 300 | loss") && e.stdout.contains("accuracy"),
        "{}",
        e.describe()
    );
    run([
        "predict",
        "--checkpoint",
        p(&f("ck.safetensors")),
        "--x",
        p(&x),
        "-o",
        p(&f("pred.npy")),
    ])
    .success();
    let pred = npy::read_matrix(&f("pred.npy")).unwrap();
    assert_eq!(pred.shape(), [300, 3]);
    let labels = npy::read_matrix(&y).unwrap();
    let argmax = |r: &[f32]| (0..3).fold(0, |b, c| if r[c] > r[b] { c } else { b });
    let hits = (pred.data.chunks(3).zip(labels.data.chunks(3)))
        .filter(|(p, t)| argmax(p) == argmax(t))
        .count();
    let eval_acc: f64 = e
        .stdout
        .split("accuracy ")
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        (hits as f64 / 300.0 - eval_acc).abs() < 1e-4,
        "{hits} vs {}",
        e.stdout
    );
    // Bad input.
    let r = run(["--device", "cpu", "--val-split", "1.5", "--epochs", "1"]);
    assert_bad_input(&r, &["--val-split", "1.5"]);
    let r = run(["--device", "cpu", "--val-x", p(&x), "--epochs", "1"]);
    assert_bad_input(&r, &["--val-x", "--val-y"]);
    let r = run([
        "eval",
        "--checkpoint",
        p(&f("ck.safetensors")),
        "--x",
        p(&y),
        "--y",
        p(&y),
    ]);
    assert_bad_input(&r, &["--x", "3 columns", "6 inputs"]);
    let r = run(["eval", "--checkpoint", p(&x), "--x", p(&x), "--y", p(&y)]);
    assert_bad_input(&r, &["cx.npy"]);
    let r = run([
        "predict",
        "--checkpoint",
        p(&f("ck.safetensors")),
        "--x",
        p(&x),
        "-o",
        p(&f("no/dir/p.npy")),
    ]);
    assert_bad_input(&r, &["p.npy", "does not exist"]);
}

/// Targets given as integer class indices (1-D, as numpy's `np.int64` labels) train as one-hot
/// rows over the classes, and report accuracy; out-of-range or 2-D integer labels exit 2.
#[test]
fn cli_class_index_targets_become_one_hot() {
    let tmp = tempfile::tempdir().unwrap();
    let (x, y) = classes(tmp.path());
    let onehot = npy::read_matrix(&y).unwrap();
    let labels: Vec<u8> = (onehot.data.chunks(3))
        .flat_map(|r| ((0..3).position(|c| r[c] == 1.0).unwrap() as i64).to_le_bytes())
        .collect();
    let lp = tmp.path().join("labels.npy");
    write_npy(&lp, "<i8", &[300], &labels);
    let args = |y: &Path| {
        run([
            "--device",
            "cpu",
            "--x",
            p(&x),
            "--y",
            p(y),
            "--batch",
            "30",
            "--epochs",
            "20",
            "--loss",
            "mse",
            "--optimizer",
            "adam",
            "--lr",
            "1e-2",
            "--bias",
            "--init-scheme",
            "torch",
            "--val-split",
            "0.2",
            "--quiet",
        ])
    };
    let a = args(&lp).success();
    let b = args(&y).success();
    let held = |r: &Run| {
        r.stdout
            .lines()
            .find(|l| l.starts_with("held-out"))
            .map(String::from)
    };
    assert_eq!(
        a.summary().2,
        b.summary().2,
        "labels train exactly as their one-hot rows"
    );
    assert_eq!(held(&a), held(&b));
    assert!(a.stdout.contains("accuracy"), "{}", a.describe());
    let r = run([
        "--device",
        "cpu",
        "--x",
        p(&x),
        "--y",
        p(&lp),
        "--layers",
        "6,8,2",
    ]);
    assert_bad_input(&r, &["labels.npy", "class index 2", "2 outputs"]);
    write_npy(&lp, "<i8", &[100, 3], &[0u8; 2400]);
    let r = run(["--device", "cpu", "--x", p(&x), "--y", p(&lp)]);
    assert_bad_input(&r, &["labels.npy", "[100, 3]"]);
}

// ---------------------------------------------------------------------------------------------
// Classification and the options past the core: bad values of the new flags, class targets from
// files (and their faults), accuracy in the outputs, `predict --as`.

bad_flag!(
    bad_activation_lists_the_valid_ones,
    ["--activation", "swish"],
    [
        "--activation",
        "swish",
        "leaky-relu[:SLOPE]",
        "gelu",
        "sigmoid"
    ]
);
bad_flag!(
    bad_leaky_relu_slope_names_the_field,
    ["--activation", "leaky-relu:-0.5"],
    ["--activation", "SLOPE"]
);
bad_flag!(
    activation_parameter_on_tanh_exits_2,
    ["--activation", "tanh:2"],
    ["--activation", "no parameter"]
);
bad_flag!(
    bad_schedule_lists_the_valid_ones,
    ["--lr-schedule", "linear"],
    ["--lr-schedule", "step:EVERY:GAMMA", "cosine:T_MAX[:MIN_LR]"]
);
bad_flag!(
    schedule_without_gamma_names_the_field,
    ["--lr-schedule", "step:10"],
    ["--lr-schedule", "GAMMA"]
);
bad_flag!(
    schedule_with_a_bad_t_max_names_the_field,
    ["--lr-schedule", "cosine:ten"],
    ["--lr-schedule", "T_MAX", "ten"]
);
bad_flag!(
    zero_warmup_names_the_field,
    ["--warmup", "0"],
    ["--warmup", "STEPS"]
);
bad_flag!(
    negative_weight_decay_exits_2,
    ["--weight-decay", "-0.1"],
    ["--weight-decay", "-0.1"]
);
bad_flag!(
    weight_decay_not_a_number_exits_2,
    ["--weight-decay", "lots"],
    ["--weight-decay", "lots"]
);
bad_flag!(
    cross_entropy_with_one_output_exits_2,
    ["--loss", "cross-entropy", "--layers", "10,5,1"],
    ["--loss", "2 outputs"]
);
bad_flag!(
    bad_loss_lists_cross_entropy,
    ["--loss", "nll"],
    ["--loss", "cross-entropy"]
);

#[test]
fn predict_with_an_unknown_kind_exits_2_listing_the_kinds() {
    let r = run([
        "predict",
        "--checkpoint",
        "none.safetensors",
        "--x",
        "none.npy",
        "-o",
        "out.npy",
        "--as",
        "logits",
    ]);
    assert_bad_input(&r, &["--as", "probabilities", "classes"]);
}

/// Class targets (int64 .npy; an integer CSV column) whose faults are named with the file and
/// the row; probability rows that are negative or do not sum to 1.
#[test]
fn cli_bad_class_targets_exit_2_naming_the_file_and_row() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let x = Matrix::from_vec(6, 3, common::randn(&mut common::rng(5), 18));
    npy::write_matrix(&dir.join("x.npy"), &x).unwrap();
    let labels = |name: &str, v: &[i64]| {
        let bytes: Vec<u8> = v.iter().flat_map(|c| c.to_le_bytes()).collect();
        let path = dir.join(name);
        write_npy(&path, "<i8", &[v.len()], &bytes);
        path
    };
    let ce = |y: &Path, extra: &[&str]| {
        let xs = dir.join("x.npy");
        let mut args = vec![
            "--device",
            "cpu",
            "--loss",
            "cross-entropy",
            "--epochs",
            "2",
            "--x",
            p(&xs),
            "--y",
            p(y),
        ];
        args.extend(extra);
        run(args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    };
    let y = labels("big.npy", &[0, 1, 2, 3, 4, 9]);
    assert_bad_input(
        &ce(&y, &["--layers", "3,8,4"]),
        &["big.npy", "row 4", "out of range", "4 outputs"],
    );
    let y = labels("neg.npy", &[0, 1, -1, 0, 1, 0]);
    assert_bad_input(&ce(&y, &[]), &["neg.npy", "row 2", "negative"]);
    // A stray huge index would make a one-hot matrix that wide: refused unless --layers says so.
    let y = labels("huge.npy", &[0, 1, 2, 3_000_000_000, 1, 0]);
    assert_bad_input(&ce(&y, &[]), &["huge.npy", "65536 classes", "--layers"]);
    // Probability rows.
    let rows = |name: &str, v: &[f32]| {
        let path = dir.join(name);
        npy::write_matrix(&path, &Matrix::from_vec(6, 2, v.to_vec())).unwrap();
        path
    };
    let good = [
        0.5f32, 0.5, 1.0, 0.0, 0.25, 0.75, 0.0, 1.0, 0.9, 0.1, 0.3, 0.7,
    ];
    let mut bad = good;
    bad[7] = 0.5;
    let y = rows("sum.npy", &bad);
    assert_bad_input(&ce(&y, &[]), &["sum.npy", "row 3", "sum to 0.5"]);
    let mut bad = good;
    (bad[4], bad[5]) = (-0.25, 1.25);
    let y = rows("negp.npy", &bad);
    assert_bad_input(&ce(&y, &[]), &["negp.npy", "row 2", "negative"]);
    ce(&rows("ok.npy", &good), &[]).success();
    // A CSV target column of class indices, and one that is not.
    let mut csv = String::from("a,b,c,label\n");
    for (i, row) in x.data.chunks(3).enumerate() {
        csv.push_str(&format!("{},{},{},{}\n", row[0], row[1], row[2], i % 3));
    }
    std::fs::write(dir.join("ok.csv"), &csv).unwrap();
    let fit = |csv: &str| {
        run([
            "--device",
            "cpu",
            "--loss",
            "cross-entropy",
            "--epochs",
            "2",
            "--data",
            &format!("{}/{csv}", p(dir)),
            "--targets",
            "1",
        ])
    };
    let r = fit("ok.csv").success();
    assert!(r.stdout.contains("[3 -> 100 -> 3]"), "{}", r.describe());
    std::fs::write(dir.join("half.csv"), csv.replacen(",1\n", ",1.5\n", 1)).unwrap();
    assert_bad_input(
        &fit("half.csv"),
        &["half.csv", "row 1", "1.5", "class index"],
    );
}

/// A cross-entropy run on class indices reports the accuracy in the log lines, the summary line,
/// the summary JSON and the history (a column), `eval` prints it, and `predict` writes the
/// outputs, the probabilities (rows summing to 1) or the classes (int64, the rows' argmax).
#[test]
fn cli_cross_entropy_reports_accuracy_everywhere_and_predict_writes_each_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let digits = |f: &str| common::fixture_path(&format!("digits/{f}"));
    let (hist, json, ckpt) = (
        dir.join("h.csv"),
        dir.join("s.json"),
        dir.join("m.safetensors"),
    );
    let r = run([
        "--device",
        "cpu",
        "--preset",
        "digits",
        "--epochs",
        "10",
        "--x",
        p(&digits("train_x.npy")),
        "--y",
        p(&digits("train_y.npy")),
        "--history",
        p(&hist),
        "--summary-json",
        p(&json),
        "--save",
        p(&ckpt),
    ])
    .success();
    assert!(r.stdout.contains("  acc 0."), "{}", r.describe());
    assert!(r.stdout.contains("| accuracy 0.9"), "{}", r.describe());
    let csv = std::fs::read_to_string(&hist).unwrap();
    assert!(csv.starts_with("epoch,loss,accuracy\n"), "{csv}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let acc = v["accuracy"].as_array().unwrap();
    assert_eq!(acc.first().unwrap()["epoch"], 0);
    assert_eq!(acc.last().unwrap()["epoch"], 10);
    assert!(
        acc.last().unwrap()["accuracy"].as_f64().unwrap() > 0.9,
        "{v:#}"
    );
    assert_eq!(v["config"]["loss"], "cross-entropy");
    let e = run([
        "eval",
        "--checkpoint",
        p(&ckpt),
        "--x",
        p(&digits("test_x.npy")),
        "--y",
        p(&digits("test_y.npy")),
    ])
    .success();
    assert!(e.stdout.contains("accuracy 0.9"), "{}", e.describe());
    let predict = |kind: &str| {
        let out = dir.join(format!("{kind}.npy"));
        run([
            "predict",
            "--checkpoint",
            p(&ckpt),
            "--x",
            p(&digits("test_x.npy")),
            "-o",
            p(&out),
            "--as",
            kind,
        ])
        .success();
        out
    };
    let outputs = npy::read_matrix(&predict("outputs")).unwrap();
    let probs = npy::read_matrix(&predict("probabilities")).unwrap();
    assert_eq!((probs.rows, probs.cols), (360, 10));
    for row in probs.data.chunks(10) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    let classes = npy::read_targets(&predict("classes"), Some(10)).unwrap();
    for (c, o) in classes.data.chunks(10).zip(outputs.data.chunks(10)) {
        assert_eq!(
            gpu_train::eval::argmax(c),
            gpu_train::eval::argmax(o),
            "a class is its row's largest output"
        );
    }
}
