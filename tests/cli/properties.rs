//! Random command lines built from the real flags, each with values valid and not (proptest,
//! a bounded case count): every one trains (exit 0, or 3 for a diverged run) or is refused with
//! exit 2 and a message; none panics, and none leaves a partial or temporary file: every output
//! that exists reads back whole.

use gpu_train::io::history::History;
use proptest::prelude::*;
use std::path::Path;
use std::process::Command;

/// Each flag with values that train and values that must be refused.
type Flag = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
);
const FLAGS: &[Flag] = &[
    (
        "--layers",
        &["4,8,1", "3,5,2", "2,3,3,2", "6,1"],
        &["0,1", "4", "a,b", "4,,1", "99999999999999999999,1"],
    ),
    (
        "--batch",
        &["1", "4", "8"],
        &["0", "-1", "x", "99999999999999999999"],
    ),
    ("--rows", &["8", "12"], &["3", "0", "x"]),
    ("--epochs", &["1", "3", "7"], &["0", "1099511627777", "abc"]),
    (
        "--lr",
        &["1e-3", "0.05"],
        &["0", "-1", "nan", "inf", "1e40"],
    ),
    (
        "--activation",
        &["relu", "tanh", "sigmoid", "gelu", "none", "leaky-relu:0.2"],
        &["leaky-relu:-1", "swish"],
    ),
    (
        "--loss",
        &["sse", "mse", "half-sse", "l1", "cross-entropy"],
        &["hinge"],
    ),
    (
        "--optimizer",
        &["sgd", "momentum", "adam", "adamw"],
        &["rmsprop"],
    ),
    ("--weight-decay", &["0", "0.01"], &["-1", "x"]),
    (
        "--lr-schedule",
        &["constant", "step:2:0.5", "cosine:5", "cosine:5:1e-4"],
        &["step:0:1", "cosine", "warp"],
    ),
    ("--warmup", &["2", "3:0.5"], &["x:y"]),
    ("--momentum", &["0.9", "0"], &["1", "-0.5"]),
    ("--eps", &["1e-8"], &["0", "-1"]),
    (
        "--init-scheme",
        &["normal", "torch", "xavier", "kaiming", "constant:0.1"],
        &["constant:x", "he"],
    ),
    ("--log-every", &["0", "1", "2"], &["x"]),
    ("--val-split", &["0.25"], &["0", "1", "2", "x"]),
    ("--dynamic-depth", &["2"], &["x"]),
    ("--checkpoint-every", &["1", "2"], &["0", "x"]),
    ("--seed", &["1", "42"], &["-3", "x"]),
];

/// Flags without a value.
const SWITCHES: &[&str] = &[
    "--bias",
    "--no-bias",
    "--nesterov",
    "--no-shuffle",
    "--shuffle",
];

/// Outputs a line may ask for, named in the case's own directory.
const OUTPUTS: &[(&str, &str)] = &[
    ("--history", "h.csv"),
    ("--history", "h.json"),
    ("--summary-json", "s.json"),
    ("--save", "ck.safetensors"),
    ("--plot", "p.svg"),
    ("--save-final", "final"),
    ("--save-init", "init"),
];

/// Flags drawn (index, value index, whether from the refused values), switches, outputs.
type Line = (Vec<(usize, usize, bool)>, Vec<bool>, Vec<bool>);

fn line() -> impl Strategy<Value = Line> {
    let flags = prop::collection::vec(
        (0..FLAGS.len(), 0usize..16, prop::bool::weighted(0.1)),
        0..7,
    );
    let switches = prop::collection::vec(prop::bool::weighted(0.15), SWITCHES.len());
    let outputs = prop::collection::vec(prop::bool::weighted(0.3), OUTPUTS.len());
    (flags, switches, outputs)
}

/// Whether the file an output flag wrote reads back whole; `required` (the run exited 0): whether
/// it was written at all.
fn check_output(path: &Path, required: bool) -> Result<(), String> {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    if !path.exists() {
        return match required {
            true => Err(format!("{name}: not written by a run that exited 0")),
            false => Ok(()),
        };
    }
    let r = match name.as_str() {
        "h.csv" | "h.json" => History::read(path).map(|_| ()).map_err(|e| e.to_string()),
        "s.json" => (std::fs::read(path).map_err(|e| e.to_string()))
            .and_then(|b| {
                serde_json::from_slice::<serde_json::Value>(&b).map_err(|e| e.to_string())
            })
            .map(|_| ()),
        "ck.safetensors" => gpu_train::io::checkpoint::job_of(path)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        "p.svg" => (std::fs::read_to_string(path).map_err(|e| e.to_string())).and_then(|t| {
            (t.trim_end().ends_with("</svg>"))
                .then_some(())
                .ok_or("unfinished svg".into())
        }),
        _ => Ok(()),
    };
    r.map_err(|e| format!("{name}: {e}"))
}

proptest! {
    // Each case is a process training a tiny net on the CPU (a few ms to a second).
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_command_lines_train_or_exit_2_and_leave_whole_files((flags, switches, outputs) in line()) {
        let dir = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = vec!["--device".into(), "cpu".into(), "--quiet".into()];
        // A small net unless the line picks its own layers (the default job is too slow here).
        if !flags.iter().any(|&(f, ..)| FLAGS[f].0 == "--layers") {
            args.extend(["--layers".into(), "4,3,2".into()]);
        }
        if !flags.iter().any(|&(f, ..)| FLAGS[f].0 == "--epochs") {
            args.extend(["--epochs".into(), "3".into()]);
        }
        // Each flag once (a repeated one is refused by the parser, a case of its own below).
        let mut seen = std::collections::HashSet::new();
        for &(f, v, refused) in flags.iter().filter(|(f, ..)| seen.insert(*f)) {
            let (flag, valid, invalid) = FLAGS[f];
            let values = if refused { invalid } else { valid };
            args.extend([flag.to_string(), values[v % values.len()].to_string()]);
        }
        for (s, &on) in SWITCHES.iter().zip(&switches) {
            if on {
                args.push(s.to_string());
            }
        }
        let mut paths = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for ((flag, name), &on) in OUTPUTS.iter().zip(&outputs) {
            if on && seen.insert(flag) {
                let p = dir.path().join(name);
                args.extend([flag.to_string(), p.to_string_lossy().into_owned()]);
                paths.push(p);
            }
        }
        let out = Command::new(env!("CARGO_BIN_EXE_gpu-train"))
            .args(&args)
            .env("XDG_RUNTIME_DIR", "/tmp")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let shown = format!("gpu-train {}\nexit {:?}\n{stderr}", args.join(" "), out.status.code());
        prop_assert!(!stderr.contains("panicked"), "{shown}");
        match out.status.code() {
            Some(0) | Some(3) => {}
            Some(2) => prop_assert!(stderr.starts_with("error: ") && stderr.len() > 20, "{shown}"),
            _ => prop_assert!(false, "{shown}"),
        }
        for p in &paths {
            if let Err(e) = check_output(p, out.status.code() == Some(0)) {
                prop_assert!(false, "{shown}\n{e}");
            }
        }
        let left: Vec<String> = (std::fs::read_dir(dir.path()).unwrap())
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        prop_assert!(left.is_empty(), "{shown}\ntemporary files left: {left:?}");
    }
}
