//! `gpu-train verify` end to end: the quick suite passes on this machine's adapter and covers
//! every kernel family; a wrong kernel (a copy of the shaders, edited, through
//! GPU_TRAIN_SHADER_DIR) makes it fail, naming that kernel and shape and nothing else; bad input
//! exits 2. tests/mutants/run.py does the same for 78 named mutations.

use crate::common;

use common::gpu_or_skip;
use gpu_train::gpu::layout::Layout;
use gpu_train::gpu::Block;
use gpu_train::verify::{Report, FORMAT};
use std::collections::BTreeSet;

fn verify(args: &[&str], envs: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let r = crate::run_env(["verify"].iter().chain(args), envs);
    (r.code, r.stdout, r.stderr)
}

/// `verify ARGS --json F` with `envs`: the exit code, stdout, stderr and the report it wrote.
fn verify_report(args: &[&str], envs: &[(&str, &str)]) -> (Option<i32>, String, String, Report) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("v.json");
    let mut all = args.to_vec();
    all.extend(["--json", json.to_str().unwrap()]);
    let (code, out, err) = verify(&all, envs);
    let text = std::fs::read_to_string(&json)
        .unwrap_or_else(|e| panic!("no report ({e}), exit {code:?}: {out}\n{err}"));
    (code, out, err, serde_json::from_str(&text).unwrap())
}

#[test]
fn verify_quick_passes_and_covers_every_kernel_family() {
    let Some(ctx) = gpu_or_skip() else { return };
    let (code, out, err, r) = verify_report(&["--quick"], &[]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("err/bound"), "the table's head: {out}");
    assert_eq!(r.format, FORMAT);
    assert!(!r.devices.is_empty() && r.devices[0].kind == "gpu");
    assert!(r.checks.iter().all(|c| c.passed && c.ratio <= 1.0));
    let kernels: BTreeSet<&str> = r.checks.iter().map(|c| c.kernel.as_str()).collect();
    let mut want: Vec<String> = [
        "matmul/store",
        "matmul/sq-err",
        "matmul/abs-err",
        "matmul/bias",
        "matmul/sum",
        "matmul/logits",
        "bias_update/store",
        "bias_update/sum",
        "loss_reduce",
        "loss_reduce/advance",
        "cross_entropy",
        "train/sgd/sse",
        "train/adam/sse",
        "train/sgd/l1",
        "train/sgd/sse/mini-batches",
        "train/adam/sse/dynamic",
    ]
    .map(String::from)
    .into();
    // Every activation forward and backward, every optimizer step plain and with the decay and
    // the schedule, fused into the product and into the bias's update.
    for a in ["relu", "leaky-relu", "tanh", "sigmoid", "gelu", "linear"] {
        want.push(format!("matmul/{a}"));
        want.push(format!("matmul/{a}-grad"));
    }
    for o in ["sgd", "momentum", "nesterov", "adam", "adamw"] {
        for step in [o.to_string(), format!("{o}+decay+sched")] {
            want.push(format!("matmul/{step}"));
            want.push(format!("bias_update/{step}"));
        }
    }
    for k in &want {
        assert!(
            kernels.contains(k.as_str()),
            "{k} is not checked: {kernels:?}"
        );
    }
    let variants: BTreeSet<&str> = (r.checks.iter())
        .filter(|c| c.kernel == "matmul/relu")
        .map(|c| c.variant.as_str())
        .collect();
    let every: BTreeSet<&str> = (Block::of_layout(ctx.auto_layout()).into_iter())
        .map(|b| b.name())
        .collect();
    assert_eq!(variants, every, "every variant of the layout --quick takes");
    assert!(
        out.contains(&format!(
            "{} checks, {} passed, 0 failed",
            r.checks.len(),
            r.checks.len()
        )),
        "{out}"
    );
}

/// A wrong ReLU (its floor moved off zero) fails every check of the ReLU epilogue, in every
/// block and on every shape, and nothing else but the training runs that use ReLU; the message
/// names the kernel and a shape.
#[test]
fn verify_fails_naming_the_wrong_kernel_and_nothing_else() {
    if gpu_or_skip().is_none() {
        return;
    }
    let wrong = shader_copy(
        "activation.wgsl",
        "case ACT_RELU: { return max(z, vec4<f32>(0.0)); }",
        "case ACT_RELU: { return max(z, vec4<f32>(1e-3)); }",
    );
    let env = [("GPU_TRAIN_SHADER_DIR", wrong.path().to_str().unwrap())];
    let (code, out, err, r) = verify_report(&["--quick", "--layout", "buffer"], &env);
    assert_eq!(
        code,
        Some(1),
        "a wrong kernel must fail verify: {out}\n{err}"
    );
    assert!(
        err.contains("matmul/relu ") && err.contains("1x1001x64"),
        "the message names the kernel and shape: {err}"
    );
    assert!(
        err.contains("GPU_TRAIN_SHADER_DIR"),
        "where the shaders came from: {err}"
    );
    let relu: Vec<_> = (r.checks.iter())
        .filter(|c| c.kernel == "matmul/relu")
        .collect();
    assert_eq!(
        relu.len(),
        Block::of_layout(Layout::Buffer).len() * 3 * r.devices.len(),
        "every block, three shapes: {relu:?}"
    );
    assert!(relu
        .iter()
        .all(|c| !c.passed && c.ratio > 1.0 && c.layout == "buffer"));
    for c in r.failed() {
        assert!(
            c.kernel == "matmul/relu" || c.kernel.starts_with("train/"),
            "{} does not run ReLU forward: {c:?}",
            c.kernel
        );
    }
    assert!(r.failed().any(|c| c.kernel == "train/sgd/sse"));
}

#[test]
fn verify_without_an_adapter_or_on_the_cpu_exits_2() {
    let (code, _, err) = verify(&["--quick"], &[("WGPU_BACKEND", "dx12")]);
    if cfg!(not(windows)) {
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("mesa-vulkan-drivers"), "{err}");
    }
    let (code, _, err) = verify(&["--device", "cpu"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--device") && err.contains("GPU adapter"),
        "{err}"
    );
    let (code, _, err) = verify(&["--layout", "tiles"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("texels") && err.contains("buffer"), "{err}");
}

/// A copy of `shaders/` for `GPU_TRAIN_SHADER_DIR`, with `from` replaced by `to` in `file`.
fn shader_copy(file: &str, from: &str, to: &str) -> tempfile::TempDir {
    shader_copy_edits(file, &[(from, to)])
}

/// A copy of `shaders/` with each `(from, to)` of `edits` applied to `file`.
fn shader_copy_edits(file: &str, edits: &[(&str, &str)]) -> tempfile::TempDir {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let tmp = tempfile::tempdir().unwrap();
    let mut dirs = vec![src.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            let to_path = tmp.path().join(path.strip_prefix(&src).unwrap());
            if path.is_dir() {
                std::fs::create_dir_all(&to_path).unwrap();
                dirs.push(path);
            } else {
                let text = std::fs::read_to_string(&path).unwrap();
                let mut text = text;
                if to_path.ends_with(file) {
                    for (from, to) in edits {
                        assert!(text.contains(from), "{file} lacks {from:?}");
                        text = text.replacen(from, to, 1);
                    }
                }
                std::fs::write(to_path, text).unwrap();
            }
        }
    }
    tmp
}

/// A shader directory that lacks a file is bad input, named before anything runs.
#[test]
fn a_missing_shader_dir_exits_2_naming_the_file() {
    if gpu_or_skip().is_none() {
        return;
    }
    let env = [("GPU_TRAIN_SHADER_DIR", "/nonexistent/shaders")];
    let r = crate::Cmd::on("gpu").epochs(1).run_env(&env);
    assert_eq!(r.code, Some(2), "{}", r.describe());
    assert!(
        r.stderr.contains("/nonexistent/shaders/") && r.stderr.contains(".wgsl"),
        "{}",
        r.describe()
    );
    assert!(r.epoch_lines().is_empty(), "{}", r.describe());
}

/// `--fail-fast` stops at the first failing check: exit 1, one failure, and it is the last check
/// of the report (nothing ran after it).
#[test]
fn verify_fail_fast_stops_at_the_first_failure() {
    if gpu_or_skip().is_none() {
        return;
    }
    let wrong = shader_copy("optimizer.wgsl", "p0 = p * (1.0 - lr * wd);", "p0 = p;");
    let env = [("GPU_TRAIN_SHADER_DIR", wrong.path().to_str().unwrap())];
    let (code, out, err, r) = verify_report(&["--quick", "--fail-fast"], &env);
    assert_eq!(
        code,
        Some(1),
        "AdamW without its decay must fail: {out}\n{err}"
    );
    let failed: Vec<_> = r.failed().collect();
    assert_eq!(failed.len(), 1, "{out}");
    assert_eq!(failed[0], r.checks.last().unwrap(), "{out}");
    assert!(failed[0].kernel.contains("adamw+decay"), "{:?}", failed[0]);
}

/// The training checks compare every parameter: a step without AdamW's decoupled decay and
/// without the other optimizers' L2 decay fails the training runs that decay, each naming the
/// epoch and the parameter element (on the loss alone these moved 0.1-0.5 of its bound and
/// passed), while the runs without decay still pass.
#[test]
fn verify_training_checks_catch_a_dropped_decay_at_the_parameters() {
    if gpu_or_skip().is_none() {
        return;
    }
    let wrong = shader_copy_edits(
        "optimizer.wgsl",
        &[
            ("p0 = p * (1.0 - lr * wd);", "p0 = p;"),
            ("g = g0 + wd * p;", "g = g0;"),
        ],
    );
    let env = [("GPU_TRAIN_SHADER_DIR", wrong.path().to_str().unwrap())];
    let (code, out, err, r) = verify_report(&["--quick", "--only", "train"], &env);
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(
        r.checks.iter().all(|c| c.kernel.starts_with("train/")),
        "{out}"
    );
    for kernel in ["train/adamw/sse", "train/momentum/mse/schedule+decay"] {
        let failed: Vec<_> = (r.checks.iter()).filter(|c| c.kernel == kernel).collect();
        assert!(!failed.is_empty(), "{kernel} did not run: {out}");
        for c in failed {
            let note = c.note.as_deref().unwrap_or_default();
            assert!(!c.passed && c.ratio > 10.0, "{c:?}");
            assert!(
                note.starts_with("epoch ") && note.contains(", want ") && !note.contains("loss"),
                "names the parameter element: {c:?}"
            );
        }
    }
    for c in r.checks.iter().filter(|c| c.kernel.starts_with("train/")) {
        let decays = c.kernel.contains("adamw") || c.kernel.contains("decay");
        assert_eq!(c.passed, !decays, "{c:?}");
    }
}

/// `--only` takes the families of checks by name; anything else is refused naming the flag and
/// the value, and listing the names.
#[test]
fn verify_only_refuses_an_unknown_family() {
    let (code, _, err) = verify(&["--only", "matmul,softmax"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--only") && err.contains("softmax") && err.contains("cross_entropy"),
        "{err}"
    );
}
