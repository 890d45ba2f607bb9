//! `gpu-train bench`, `bench compare` and `tune`: the results file round-trips and is refused
//! clearly when it cannot be used, compare handles files of other adapters and versions, the quick
//! suite runs and checks every GPU row against the CPU, a device lost mid-bench is reported in its
//! rows while the bench goes on, and a corrupt tuning cache is ignored with a warning.

use crate::common;

use common::gpu_or_skip;
use gpu_train::bench::results::{DeviceInfo, Host, HostOverhead, Results, Row, Status};
use gpu_train::gpu::tune::Parity;
use std::path::Path;

use common::run::{bin, run_command as run};
use std::process::Command;

fn device(name: &str, kind: &str) -> DeviceInfo {
    DeviceInfo {
        name: name.into(),
        kind: kind.into(),
        vendor: 0x10de,
        device: 0x2684,
        device_type: "DiscreteGpu".into(),
        backend: "vulkan".into(),
        driver: "NVIDIA".into(),
        driver_info: "550.1".into(),
        timestamps: "inside-passes".into(),
        tuned_shapes: 3,
        self_tuned: None,
        error: None,
        layout: (kind == "gpu").then_some(gpu_train::gpu::layout::Layout::Buffer),
        limits: None,
    }
}

fn row(device: usize, case: &str, kind: &str, seconds: f64, status: Status) -> Row {
    Row {
        device,
        case: case.into(),
        kind: kind.into(),
        config: serde_json::json!({"m": 1024}),
        status,
        error: None,
        warmup: 1,
        samples_s: vec![seconds, seconds * 1.1, seconds * 0.9],
        per_sample: 500,
        flops_per_sample: 1e10,
        bytes_per_sample: (kind == "matmul").then_some(1e8),
        parity: Some(Parity {
            error: 1e-7,
            tolerance: 1e-6,
            passed: status != Status::Failed,
        }),
        host_overhead: Some(HostOverhead {
            submits_per_sample: 1.0,
            readbacks_per_sample: 1.0,
            encode_s_per_epoch: 2e-5,
        }),
        kernels: vec![gpu_train::backend::KernelTime {
            workgroups: 2,
            name: "matmul 8x8".into(),
            calls: 3,
            seconds: 1e-3,
        }],
        steps_timed: 3,
    }
}

fn results(version: &str, devices: Vec<DeviceInfo>, rows: Vec<Row>) -> Results {
    Results {
        format: gpu_train::bench::results::FORMAT.into(),
        schema_version: gpu_train::bench::results::SCHEMA_VERSION,
        tool_version: version.into(),
        git_commit: Some("abc1234".into()),
        created_unix_s: 1_790_000_000,
        command: vec!["gpu-train".into(), "bench".into()],
        quick: false,
        host: Host {
            cpu: "Some CPU".into(),
            threads: 8,
            os: "linux".into(),
            arch: "x86_64".into(),
            fma_peak: None,
        },
        devices,
        rows,
    }
}

#[test]
fn results_json_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let r = results(
        "0.1.0",
        vec![device("GPU A", "gpu"), device("cpu", "cpu")],
        vec![
            row(0, "train/default", "train", 1.0, Status::Ok),
            row(
                1,
                "matmul/1024x1024x1024/tuned",
                "matmul",
                0.1,
                Status::Failed,
            ),
        ],
    );
    let path = dir.path().join("r.json");
    r.save(&path).unwrap();
    assert_eq!(Results::load(&path).unwrap(), r);
    assert_eq!(r.rows[0].epochs_per_s(), Some(500.0));
    assert!((r.rows[1].gflops() - 100.0).abs() < 1e-9);
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn compare_puts_adapters_and_versions_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.json");
    results(
        "0.1.0",
        vec![device("GPU A", "gpu")],
        vec![
            row(0, "train/default", "train", 1.0, Status::Ok),
            row(0, "matmul/1024x1024x1024/tuned", "matmul", 0.1, Status::Ok),
        ],
    )
    .save(&a)
    .unwrap();
    // An older file of another adapter: written by an earlier version that had no optional
    // fields (no git commit, kernels, parity ...), one failed row, one case the first lacks.
    let mut old = serde_json::to_value(results(
        "0.0.9",
        vec![device("GPU B", "gpu"), device("cpu", "cpu")],
        vec![
            row(0, "train/default", "train", 0.5, Status::Ok),
            row(
                0,
                "matmul/1024x1024x1024/tuned",
                "matmul",
                0.2,
                Status::Failed,
            ),
            row(1, "train/default", "train", 2.0, Status::Ok),
            row(1, "matmul/64x100x1000/tuned", "matmul", 0.01, Status::Ok),
        ],
    ))
    .unwrap();
    old.as_object_mut().unwrap().remove("git_commit");
    for r in old["rows"].as_array_mut().unwrap() {
        for k in ["parity", "kernels", "host_overhead", "steps_timed", "error"] {
            r.as_object_mut().unwrap().remove(k);
        }
    }
    write(&b, &serde_json::to_string(&old).unwrap());
    let plot = dir.path().join("cmp.svg");
    let out = run(bin()
        .args(["bench", "compare"])
        .arg(&a)
        .arg(&b)
        .arg("--plot")
        .arg(&plot));
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    let t = &out.stdout;
    assert!(
        t.contains("gpu-train 0.1.0 (abc1234)") && t.contains("gpu-train 0.0.9"),
        "{t}"
    );
    assert!(
        t.contains("[1] GPU A (vulkan, buffer)") && t.contains("[2] GPU B (vulkan, buffer)"),
        "{t}"
    );
    let line = |case: &str| {
        t.lines()
            .find(|l| l.starts_with(case))
            .unwrap_or_else(|| panic!("no {case} line: {t}"))
            .to_string()
    };
    // 500 epochs in 1 s, 0.5 s and 2 s.
    let d = line("train/default");
    assert!(
        d.contains("500 (1.00x)") && d.contains("1000 (2.00x)") && d.contains("250 (0.50x)"),
        "{d}"
    );
    assert!(line("matmul/1024x1024x1024/tuned").contains("(0.50x) FAILED"));
    let skinny = line("matmul/64x100x1000/tuned");
    assert!(
        skinny.contains('-'),
        "a case the first file lacks: {skinny}"
    );
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("GPU B"),
        "{svg:.200}"
    );
}

#[test]
fn compare_refuses_unusable_files_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.json");
    results("0.1.0", vec![device("GPU A", "gpu")], vec![])
        .save(&good)
        .unwrap();
    let cases = [
        ("missing.json", None, "cannot read it"),
        ("text.json", Some("hello"), "not JSON"),
        (
            "summary.json",
            Some(r#"{"tool": "gpu-train", "version": "0.1.0"}"#),
            "not a gpu-train bench results file",
        ),
        (
            "newer.json",
            Some(r#"{"format": "gpu-train bench results", "schema_version": 99}"#),
            "newer gpu-train (results schema 99",
        ),
        (
            "broken.json",
            Some(r#"{"format": "gpu-train bench results", "schema_version": 1, "rows": 3}"#),
            "malformed results file",
        ),
    ];
    for (name, content, want) in cases {
        let path = dir.path().join(name);
        if let Some(c) = content {
            write(&path, c);
        }
        let out = run(bin().args(["bench", "compare"]).arg(&good).arg(&path));
        assert_eq!(out.code, Some(2), "{name}: {}", out.stderr);
        assert!(
            out.stderr.contains(name) && out.stderr.contains(want),
            "{name}: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
}

/// The quick suite on the GPU and the CPU: every row measured, every GPU row checked against the
/// CPU and passing, the file complete. No speed is asserted (tests never time); the figures are
/// in benches/README.md.
#[test]
fn quick_bench_runs_and_checks_every_gpu_row() {
    let Some(_) = gpu_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("r.json");
    let out = run(bin()
        .env("GPU_TRAIN_CACHE_DIR", dir.path().join("cache"))
        .args([
            "bench", "--quick", "--device", "gpu", "--device", "cpu", "--out",
        ])
        .arg(&out_path));
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    let r = Results::load(&out_path).unwrap();
    assert_eq!(r.devices.len(), 2);
    assert_eq!(
        (r.devices[0].kind.as_str(), r.devices[1].kind.as_str()),
        ("gpu", "cpu")
    );
    for d in 0..2 {
        let cases: Vec<&str> = (r.rows.iter())
            .filter(|x| x.device == d)
            .map(|x| x.case.as_str())
            .collect();
        assert!(cases.contains(&"train/default"), "{cases:?}");
        assert!(cases.iter().any(|c| c.starts_with("train/h")), "{cases:?}");
        assert!(cases.iter().any(|c| c.ends_with("/tuned")), "{cases:?}");
    }
    assert!(r
        .rows
        .iter()
        .any(|x| x.device == 0 && x.case.ends_with("/naive")));
    for x in &r.rows {
        assert_eq!(x.status, Status::Ok, "{x:?}");
        assert!(!x.samples_s.is_empty() && x.samples_s.iter().all(|&s| s > 0.0));
        if x.device == 0 {
            let p = x.parity.expect("GPU rows are checked");
            assert!(p.passed && p.error <= p.tolerance, "{x:?}");
        } else {
            assert!(x.parity.is_none(), "the CPU is the reference");
        }
    }
    let default = (r.rows.iter())
        .find(|x| x.device == 0 && x.case == "train/default")
        .unwrap();
    assert_eq!(default.per_sample, 500);
    let h = default.host_overhead.unwrap();
    assert_eq!(h.submits_per_sample, 1.0, "one submit per log interval");
    assert_eq!(h.readbacks_per_sample, 1.0);
    if r.devices[0].timestamps != "none" {
        assert!(default.steps_timed > 0 && !default.kernels.is_empty());
    }
    assert!(out.stdout.contains("the naive kernel"), "{}", out.stdout);
    // The tuning done on the way is cached for the adapter.
    let cached = std::fs::read_dir(dir.path().join("cache")).unwrap().count();
    assert_eq!(cached, 1);
}

/// A device lost in the middle of the suite: its row says so, its later rows are not run, the
/// CPU's rows still are, the file is written, and the exit code says something failed.
#[test]
fn device_lost_mid_bench_is_reported_and_the_bench_goes_on() {
    let Some(_) = gpu_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("r.json");
    let out = run(bin()
        .env("GPU_TRAIN_BENCH_LOSE_DEVICE", "train/h100-b1024")
        .env("GPU_TRAIN_CACHE_DIR", dir.path().join("cache"))
        .args([
            "bench", "--quick", "--device", "gpu", "--device", "cpu", "--out",
        ])
        .arg(&out_path));
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
    assert!(!out.stderr.contains("panicked at"), "{}", out.stderr);
    let r = Results::load(&out_path).unwrap();
    let gpu: Vec<&Row> = r.rows.iter().filter(|x| x.device == 0).collect();
    let lost = gpu
        .iter()
        .position(|x| x.case == "train/h100-b1024")
        .unwrap();
    assert!(gpu[..lost].iter().all(|x| x.status == Status::Ok));
    assert_eq!(gpu[lost].status, Status::Error);
    for x in &gpu[lost + 1..] {
        assert_eq!(x.status, Status::Error);
        assert!(
            x.error.as_ref().unwrap().contains("failed earlier"),
            "{x:?}"
        );
    }
    let cpu: Vec<&Row> = r.rows.iter().filter(|x| x.device == 1).collect();
    assert!(cpu.len() >= 5 && cpu.iter().all(|x| x.status == Status::Ok));
    assert!(out.stderr.contains("could not run"), "{}", out.stderr);
}

/// `tune` measures and caches, in every layout the adapter runs, with the faster layout for
/// training (what `--layout auto` then takes); a corrupt cache is then ignored with a warning and
/// training still runs.
#[test]
fn tune_caches_per_adapter_and_a_corrupt_cache_is_ignored() {
    let Some(ctx) = gpu_or_skip() else { return };
    let layouts = (gpu_train::gpu::layout::Layout::ALL.into_iter())
        .filter(|&l| ctx.kernels.supports(l))
        .count();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = run(bin()
        .env("GPU_TRAIN_CACHE_DIR", &cache)
        .args([
            "tune", "--device", "gpu", "--layers", "30,20,5", "--batch", "9",
        ])
        .args(["--shape", "65x33x17"]));
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    // 6 products per layout, and the layout for training.
    let chosen = 6 * layouts + usize::from(layouts > 1);
    assert_eq!(
        out.stdout.matches("<- chosen").count(),
        chosen,
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("FAILED"), "{}", out.stdout);
    let files: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let file: gpu_train::gpu::tune::CacheFile = serde_json::from_str(&text).unwrap();
    assert_eq!(file.entries.len(), 6 * layouts);
    if layouts > 1 {
        let choice = file
            .layout
            .as_ref()
            .expect("the layout measured for training");
        assert_eq!(choice.measured.len(), layouts);
        assert!(choice.measured.iter().all(|m| m.seconds > 0.0));
    }
    for e in &file.entries {
        assert!(e.measured.iter().all(|m| m.parity.passed));
        let layout = e.layout;
        assert_eq!(
            e.measured.len(),
            gpu_train::gpu::Block::of_layout(layout).len()
        );
    }
    let train = |c: &mut Command| {
        run(c
            .env("GPU_TRAIN_CACHE_DIR", &cache)
            .env("RUST_LOG", "info")
            .args([
                "--device", "gpu", "--layers", "30,20,5", "--batch", "9", "--epochs", "3",
            ]))
    };
    let ok = train(&mut bin());
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    assert!(
        ok.stderr
            .contains(&format!("matmul tuning: {} shapes", 6 * layouts)),
        "{}",
        ok.stderr
    );
    write(&files[0], &text[..text.len() / 2]);
    let out = train(&mut bin());
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr.contains("ignoring the matmul tuning cache") && out.stderr.contains("corrupt"),
        "{}",
        out.stderr
    );
}

#[test]
fn tune_and_bench_reject_bad_input() {
    let out = run(bin().args(["tune", "--shape", "12x0x4"]));
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("--shape") && out.stderr.contains("12x0x4"));
    let out = run(bin().args(["tune", "--device", "cpu"]));
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    let out = run(bin().args(["bench", "--quick", "--out", "/nonexistent-dir/r.json"]));
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("/nonexistent-dir"), "{}", out.stderr);
}

/// The CPU rows print their share of the FMA peak the bench measured (and the results file keeps
/// it); GPU rows, and files without a peak, print none.
#[test]
fn cpu_rows_print_their_share_of_the_measured_peak() {
    let mut r = results(
        "0.1.0",
        vec![device("GPU A", "gpu"), device("cpu", "cpu")],
        vec![
            row(0, "train/default", "train", 1.0, Status::Ok),
            row(1, "train/default", "train", 1.0, Status::Ok),
        ],
    );
    let gflops = r.rows[1].gflops();
    assert!(!gpu_train::bench::row_line(&r, &r.rows[1]).contains("of peak"));
    r.host.fma_peak = Some(gpu_train::bench::results::FmaPeak {
        isa: "avx512f".into(),
        threads: 2,
        gflops: gflops * 4.0,
    });
    let cpu = gpu_train::bench::row_line(&r, &r.rows[1]);
    assert!(cpu.contains(" 25.0% of peak"), "{cpu}");
    assert!(!gpu_train::bench::row_line(&r, &r.rows[0]).contains("of peak"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.json");
    r.save(&path).unwrap();
    assert_eq!(Results::load(&path).unwrap(), r);
}
