//! Bad input: exit 2, a message on stderr naming the flag or file, no panic; also the layouts,
//! the dynamic preset and `--init` from files.

use crate::common::gpu_or_skip;
use crate::*;
use gpu_train::init::Matrix;
use gpu_train::io::npy;

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
    let r = Cmd::cpu()
        .flag("--preset", "dynamic")
        .epochs(60)
        .flag("--save-final", p(&dir))
        .flag("--summary-json", p(&j))
        .run()
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
    let r = Cmd::cpu()
        .flag("--dynamic-depth", "2")
        .flag("--init", p(&flat))
        .run();
    assert_bad_input(&r, &["--dynamic-depth", "12,6,3"]);
}

#[test]
fn bad_device_name_exits_2_and_lists_the_choices() {
    let r = Cmd::on("bogus").epochs(1).run();
    assert_bad_input(&r, &["bogus", "auto, cpu, gpu"]);
}

/// With no adapter at all (wgpu narrowed to DX12, which only Windows has), `--device gpu` says so
/// and names the package that gives a software adapter; `auto` trains on the CPU with a notice.
#[cfg(not(windows))]
#[test]
fn device_gpu_without_any_adapter_exits_2_and_suggests_lavapipe() {
    let none = [("WGPU_BACKEND", "dx12")];
    let r = Cmd::on("gpu").epochs(1).run_env(&none);
    assert_bad_input(
        &r,
        &["--device gpu", "no GPU adapters", "mesa-vulkan-drivers"],
    );
    let r = Cmd::default().epochs(1).quiet().run_env(&none).success();
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
    let r = Cmd::on("gpu")
        .flag("--layout", "texels")
        .flag("--layers", &layers)
        .flag("--batch", "1")
        .epochs(1)
        .run();
    assert_bad_input(&r, &["w1", &rows.to_string(), "max_texture_dimension_2d"]);
    // The buffer layout has no texture-size ceiling: the same job trains.
    let r = Cmd::on("gpu")
        .flag("--layout", "buffer")
        .flag("--layers", &layers)
        .flag("--batch", "1")
        .epochs(1)
        .quiet()
        .run();
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
        let r = Cmd::on("gpu")
            .flag("--layout", layout)
            .flag("--limits", limits)
            .epochs(60)
            .quiet()
            .flag("--summary-json", p(&j))
            .run()
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
    // The untuned rule's plan (`--tune never`: a discrete GPU's first run would tune first).
    let args = [
        "--device",
        "gpu",
        "--tune",
        "never",
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
    let cpu = Cmd::cpu().quiet().run().success();
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
    let r = Cmd::on("99").epochs(1).run();
    assert_bad_input(&r, &["99", "index"]);
}

/// A valid --init folder for the small job (seed 0), to be broken by each test.
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
    let r = Cmd::cpu()
        .epochs(2)
        .flag("--layers", "30,20,5")
        .flag("--batch", "9")
        .flag("--init", p(tmp.path()))
        .run();
    assert_bad_input(&r, &["w2.npy", "[20, 5]", "[20, 4]", "--layers"]);
}

/// `--layers` that agree with the --init files, without `--batch`: the batch comes from the files
/// (the help says "[default: 64, or the row count of the --init files]"), so this must train.
#[test]
fn init_with_matching_layers_only_takes_the_batch_from_the_files() {
    let tmp = init_dir();
    let r = Cmd::cpu()
        .quiet()
        .epochs(2)
        .flag("--layers", "30,20,4")
        .flag("--init", p(tmp.path()))
        .run();
    assert_eq!(r.code, Some(0), "{}", r.describe());
}

/// Likewise `--batch` that agrees with the files, without `--layers`.
#[test]
fn init_with_matching_batch_only_takes_the_layers_from_the_files() {
    let tmp = init_dir();
    let r = Cmd::cpu()
        .quiet()
        .epochs(2)
        .flag("--batch", "9")
        .flag("--init", p(tmp.path()))
        .run();
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
    let r = Cmd::cpu().small().flag("--history", p(&h)).run();
    assert_bad_input(&r, &["h.csv", "does not exist"]);
}

#[test]
fn summary_json_into_missing_directory_exits_2_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let j = tmp.path().join("no").join("s.json");
    let r = Cmd::cpu().small().flag("--summary-json", p(&j)).run();
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
    let r = Cmd::cpu().small().flag("--save-final", p(&target)).run();
    assert_bad_input(&r, &["final"]);
}
