//! `gpu-train verify` end to end: the quick suite passes on this machine's adapter and covers
//! every kernel family; a kernel whose result is perturbed (the testing hook) makes it fail,
//! naming that kernel and shape and nothing else; bad input exits 2.

use crate::common;

use common::gpu_or_skip;
use gpu_train::gpu::layout::Layout;
use gpu_train::gpu::Block;
use gpu_train::verify::{Report, FORMAT, PERTURB_ENV};
use std::collections::BTreeSet;

fn verify(args: &[&str], envs: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let r = crate::run_env(["verify"].iter().chain(args), envs);
    (r.code, r.stdout, r.stderr)
}

fn load(path: &std::path::Path) -> Report {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn verify_quick_passes_and_covers_every_kernel_family() {
    let Some(ctx) = gpu_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("v.json");
    let (code, out, err) = verify(&["--quick", "--json", json.to_str().unwrap()], &[]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("err/bound"), "the table's head: {out}");
    let r = load(&json);
    assert_eq!(r.format, FORMAT);
    assert!(!r.devices.is_empty() && r.devices[0].kind == "gpu");
    assert!(r.checks.iter().all(|c| c.passed && c.ratio <= 1.0));
    let kernels: BTreeSet<&str> = r.checks.iter().map(|c| c.kernel.as_str()).collect();
    for k in [
        "matmul/store",
        "matmul/relu",
        "matmul/mask",
        "matmul/sgd",
        "matmul/sq-err",
        "matmul/abs-err",
        "matmul/bias",
        "matmul/sum",
        "bias_update/store",
        "bias_update/sgd",
        "loss_reduce",
        "train/sgd/sse",
        "train/adam/sse",
        "train/sgd/l1",
    ] {
        assert!(kernels.contains(k), "{k} is not checked: {kernels:?}");
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

#[test]
fn verify_fails_naming_the_perturbed_kernel_and_shape_only() {
    if gpu_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("v.json");
    let hook = [(PERTURB_ENV, "matmul/relu@65x7x1000")];
    let args = [
        "--quick",
        "--layout",
        "buffer",
        "--json",
        json.to_str().unwrap(),
    ];
    let (code, out, err) = verify(&args, &hook);
    assert_eq!(
        code,
        Some(1),
        "a wrong kernel must fail verify: {out}\n{err}"
    );
    assert!(
        err.contains("matmul/relu") && err.contains("65x7x1000"),
        "the message names the kernel and shape: {err}"
    );
    let r = load(&json);
    let failed: Vec<_> = r.checks.iter().filter(|c| !c.passed).collect();
    assert_eq!(
        failed.len(),
        Block::of_layout(Layout::Buffer).len() * r.devices.len(),
        "one check per block and adapter: {failed:?}"
    );
    for c in failed {
        assert_eq!(c.kernel, "matmul/relu");
        assert!(c.shape.ends_with("65x7x1000"), "{}", c.shape);
        assert_eq!(c.layout, "buffer");
        assert!(c.ratio > 1.0);
    }
    // The same hook on a training run fails that run.
    let hook = [(PERTURB_ENV, "train/adam/sse")];
    let (code, _, err) = verify(&["--quick", "--layout", "texels"], &hook);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("train/adam/sse"), "{err}");
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
