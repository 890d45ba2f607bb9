//! The default run on each device, `devices`, `--quiet`, `--save-init`/`--init` round trips,
//! presets, `--history` and `--summary-json`, `--save`, and divergence (exit 3).

use crate::common::{gpu_or_skip, read_history_csv};
use crate::*;
use gpu_train::backend::Backend;
use gpu_train::cpu::CpuBackend;
use gpu_train::init::{HostState, Matrix};
use gpu_train::io::npy;
use gpu_train::job::Job;

#[test]
fn cli_default_job_on_cpu_logs_every_50_epochs_and_converges() {
    let r = Cmd::cpu().run().success();
    let device = check_default_run(&r);
    assert_eq!(device, "cpu");
}

#[test]
fn cli_default_job_on_gpu_logs_every_50_epochs_and_converges() {
    let Some(ctx) = gpu_or_skip() else { return };
    let r = Cmd::on("gpu").run().success();
    let device = check_default_run(&r);
    assert_eq!(device, ctx.info.name, "summary names the adapter");
    // The same job on the CPU logs (to the 7 printed digits) nearly the same losses.
    let cpu = Cmd::cpu().run().success();
    for ((e, g), (_, c)) in r.epoch_lines().into_iter().zip(cpu.epoch_lines()) {
        assert!(
            (g - c).abs() <= 3e-3 * c.sqrt() + 1e-5 * c,
            "epoch {e}: gpu {g:e} cpu {c:e} (tolerance: tests/library/parity.rs trajectory_tol)"
        );
    }
}

#[test]
fn cli_devices_lists_adapters_and_what_auto_would_choose() {
    let r = Cmd::default().arg("devices").run().success();
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
    let r = Cmd::cpu().small().quiet().run().success();
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
    Cmd::cpu()
        .small()
        .quiet()
        .flag("--seed", "7")
        .flag("--save-init", p(&init))
        .flag("--history", p(&h1))
        .run()
        .success();
    // The saved arrays are the seeded state, in numpy's layout.
    let seeded = HostState::seeded(&Job {
        seed: 7,
        ..small_job()
    });
    assert_eq!(npy::load_state(&init).unwrap(), seeded);
    // Shapes come from the files; only lr and epochs are given again.
    Cmd::cpu()
        .quiet()
        .epochs(25)
        .flag("--lr", "1e-4")
        .flag("--init", p(&init))
        .flag("--history", p(&h2))
        .run()
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
        Cmd::on(device)
            .quiet()
            .epochs(25)
            .flag("--lr", "1e-4")
            .flag("--init", p(&init))
            .flag("--history", p(&h2))
            .run()
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
    let r = Cmd::cpu()
        .arg("--bias")
        .flag("--init", p(dir.path()))
        .epochs(1)
        .run();
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
    let r = Cmd::default().arg("presets").run().success();
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
    Cmd::cpu()
        .flag("--preset", "adam")
        .flag("--lr", "1e-3")
        .epochs(3)
        .flag("--layers", "20,8,3")
        .arg("--no-bias")
        .flag("--summary-json", p(&j))
        .quiet()
        .run()
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
    let r = Cmd::cpu().flag("--preset", "linear-delta").run().success();
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
    let r = Cmd::cpu()
        .small()
        .flag("--seed", "3")
        .flag("--log-every", "10")
        .flag("--loss", "mse")
        .flag("--init-scheme", "constant:0.25")
        .flag("--summary-json", p(&j))
        .flag("--history", p(&h))
        .run()
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
    let r = Cmd::on(device)
        .flag("--lr", "1e3")
        .epochs(50)
        .flag("--history", p(&h))
        .flag("--summary-json", p(&j))
        .run();
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

/// The summary JSON of a run.
fn summary_of(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A first run on a GPU whose cache lacks the job's products tunes them first (here lavapipe
/// planned as a discrete GPU, `GPU_TRAIN_PLAN_AS=discrete`, since `--tune auto` leaves adapters
/// of type Cpu alone): one line says what it chose, the cache holds every product, the summary
/// reports it; a second run takes the cache and does not tune; `--tune never` does not either.
#[test]
fn a_first_run_on_an_unseen_gpu_tunes_its_products_and_caches_them() {
    if gpu_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let env = [
        ("GPU_TRAIN_PLAN_AS", "discrete"),
        ("GPU_TRAIN_CACHE_DIR", cache.to_str().unwrap()),
    ];
    let (s1, s2) = (dir.path().join("1.json"), dir.path().join("2.json"));
    // A budget no run here reaches (a debug build under parallel tests is slow): every product
    // is tuned whatever the machine's speed; the budget's own test is below.
    let run = |summary: &Path| {
        Cmd::on("gpu")
            .small()
            .quiet()
            .flag("--tune-budget", 600)
            .flag("--summary-json", p(summary))
            .run_env(&env)
            .success()
    };
    let first = run(&s1);
    assert!(
        first.stderr.contains("tuned the job's products in"),
        "{}",
        first.describe()
    );
    let products = gpu_train::bench::products(&small_job()).len();
    let v = summary_of(&s1);
    let tuned = &v["device"]["self_tuned"];
    assert_eq!(tuned["tuned"], products, "{v}");
    assert_eq!(tuned["wanted"], products, "{v}");
    assert_eq!(tuned["choices"].as_array().unwrap().len(), products);
    assert!(tuned["seconds"].as_f64().unwrap() <= 600.0, "{tuned}");
    assert_eq!(v["device"]["tuned_shapes"], products, "{v}");
    let files: Vec<_> = std::fs::read_dir(&cache).unwrap().collect();
    assert_eq!(files.len(), 1, "one cache file for the adapter");

    let second = run(&s2);
    assert!(!second.stderr.contains("tuning"), "{}", second.describe());
    let v = summary_of(&s2);
    assert!(v["device"].get("self_tuned").is_none(), "{v}");
    assert_eq!(v["device"]["tuned_shapes"], products, "{v}");

    let never_cache = dir.path().join("never");
    let r = Cmd::on("gpu")
        .small()
        .quiet()
        .flag("--tune", "never")
        .run_env(&[
            ("GPU_TRAIN_PLAN_AS", "discrete"),
            ("GPU_TRAIN_CACHE_DIR", never_cache.to_str().unwrap()),
        ])
        .success();
    assert!(!r.stderr.contains("tun"), "{}", r.describe());
    assert!(!never_cache.exists(), "--tune never writes no cache");
}

/// The budget bounds the tuning: with a tiny one, the first product is tuned and the run says
/// the budget ran out; `--tune always` tunes on an adapter of type Cpu too; a budget of 0 or
/// below is refused naming the flag.
#[test]
fn the_tuning_budget_bounds_it_and_bad_budgets_are_refused() {
    if gpu_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("s.json");
    let r = Cmd::on("gpu")
        .small()
        .quiet()
        .flag("--tune", "always")
        .flag("--tune-budget", "0.000001")
        .flag("--summary-json", p(&s))
        .run_env(&[(
            "GPU_TRAIN_CACHE_DIR",
            dir.path().join("c").to_str().unwrap(),
        )])
        .success();
    assert!(r.stderr.contains("budget"), "{}", r.describe());
    let v = summary_of(&s);
    assert_eq!(v["device"]["self_tuned"]["tuned"], 1, "{v}");
    for bad in ["0", "-1", "soon"] {
        let r = Cmd::on("gpu")
            .small()
            .arg(format!("--tune-budget={bad}"))
            .run();
        assert_bad_input(&r, &["--tune-budget", bad]);
    }
    let r = Cmd::on("gpu").small().flag("--tune", "sometimes").run();
    assert_bad_input(&r, &["--tune", "sometimes"]);
}
