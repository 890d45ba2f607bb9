//! What each fuzz target (`fuzz/fuzz_targets/`) does with its input: one function per parser of
//! outside input, feeding it arbitrary bytes the way a file would. They live in the library so
//! that `tests/library/fuzz_inputs.rs` replays the committed corpus and every input a fuzzer ever
//! crashed on with the ordinary toolchain, and so that they keep building with the crate. Each
//! must return (an error is a fine outcome) and never panic, hang or allocate without bound.

use crate::bench::results::{self, Results};
use crate::io::{checkpoint, data, history::History, npy};
use crate::spec::JobSpec;
use std::path::{Path, PathBuf};

/// The `.npy` readers: a matrix (`--x`, `--init`), targets as floats or class indices.
pub fn npy(bytes: &[u8]) {
    let path = Path::new("input.npy");
    let _ = npy::parse_matrix(path, bytes);
    let _ = npy::parse_targets(path, bytes, None);
    let _ = npy::parse_targets(path, bytes, Some(10));
}

/// The CSV dataset reader; the first byte picks `--targets` (0 to 3, 0 being refused).
pub fn csv(bytes: &[u8]) {
    let Some((&first, text)) = bytes.split_first() else {
        return;
    };
    let _ = data::parse_csv(Path::new("input.csv"), text, usize::from(first % 4));
}

/// A checkpoint: the model file, then (after a two-byte little-endian length of the model
/// file's part) the optimizer file; the net is the one the model file's metadata describes.
pub fn checkpoint(bytes: &[u8]) {
    let (model, optim) = match bytes {
        [a, b, rest @ ..] => {
            let n = usize::from(u16::from_le_bytes([*a, *b])).min(rest.len());
            let (m, o) = rest.split_at(n);
            (m, (!o.is_empty()).then_some(o))
        }
        _ => (bytes, None),
    };
    let path = Path::new("input.safetensors");
    if let Ok(job) = checkpoint::parse_job(path, model) {
        let _ = checkpoint::parse(path, model, optim, &job);
    }
}

/// The results JSON that `bench compare` reads, then its table of the file beside itself.
pub fn bench_results(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let path = PathBuf::from("results.json");
    if let Ok(r) = Results::parse(&path, text) {
        let _ = results::compare_table(&[(path.clone(), r.clone()), (path, r)]);
    }
}

/// The tuning cache, for the adapter it names itself and as if measured on this build's
/// kernels (so that a mutated file reaches the checks past those), then the table built from it.
pub fn tune_cache(bytes: &[u8]) {
    use crate::gpu::tune;
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    let Ok(id) = serde_json::from_value::<tune::AdapterId>(value["adapter"].clone()) else {
        return;
    };
    // This build's kernels, so that a corpus from another build reaches the checks past them.
    if value.get("kernels").is_some() {
        value["kernels"] = tune::kernels_hash().into();
    }
    if let Ok(file) = tune::parse_cache(&value.to_string(), &id) {
        let _ = tune::Table::from_entries(&file.entries);
    }
}

/// A loss history (`plot`'s input), as CSV and as JSON.
pub fn history(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let _ = History::parse(Path::new("history.csv"), text);
    let _ = History::parse(Path::new("history.json"), text);
}

/// A job as JSON (the page's, a summary's `config`): parsed, validated, and resolved (seeded)
/// where its matrices are small enough to draw in a moment.
pub fn job_spec(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let Ok(spec) = JobSpec::parse(text) else {
        return;
    };
    let Ok(job) = spec.job() else {
        return;
    };
    if job.validate().is_ok() && job.host_bytes().is_some_and(|b| b <= 1 << 24) {
        let _ = spec.resolve();
    }
}

/// One fuzz target's body.
pub type Target = fn(&[u8]);

/// Every target by name, for the replay test and the script.
pub const TARGETS: &[(&str, Target)] = &[
    ("npy", npy),
    ("csv", csv),
    ("checkpoint", checkpoint),
    ("bench_results", bench_results),
    ("tune_cache", tune_cache),
    ("history", history),
    ("job_spec", job_spec),
];
