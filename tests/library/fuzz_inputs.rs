//! The fuzz targets' inputs, replayed with the ordinary toolchain: the committed seed corpus
//! (`fuzz/corpus/TARGET/`), every input a fuzzer crashed on once (`fuzz/regressions/TARGET/`),
//! and a few thousand seeded mutations of the corpus (bit flips, cuts, splices, numbers at the
//! edges), so that a parser that starts to panic is caught without cargo-fuzz. The long runs are
//! `fuzz/run.sh`. Plus the specific faults fuzzing found, each checked for its message.

use gpu_train::fuzz::TARGETS;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.is_file());
    v.sort();
    v
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Run `f` on `input`, naming the target and input if it panics.
fn replay(name: &str, what: &str, f: fn(&[u8]), input: &[u8]) {
    if std::panic::catch_unwind(|| f(input)).is_err() {
        let dump = std::env::temp_dir().join(format!("gpu-train-fuzz-{name}-{what}"));
        let _ = std::fs::write(&dump, input);
        panic!(
            "fuzz target {name} panicked on {what} (input saved to {})",
            dump.display()
        );
    }
}

#[test]
fn every_target_has_a_seed_corpus() {
    for (name, _) in TARGETS {
        let n = files(&root().join("corpus").join(name)).len();
        assert!(n >= 3, "fuzz/corpus/{name} has {n} seeds");
    }
}

#[test]
fn the_corpus_and_the_regressions_replay_without_a_panic() {
    for (name, f) in TARGETS {
        for dir in ["corpus", "regressions"] {
            for p in files(&root().join(dir).join(name)) {
                let bytes = std::fs::read(&p).unwrap();
                replay(name, &p.display().to_string().replace('/', "_"), *f, &bytes);
            }
        }
    }
}

/// A mutation of `seed` in the manner of a fuzzer's simplest moves.
fn mutate(rng: &mut ChaCha8Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..rng.random_range(1..4) {
        let at = if v.is_empty() {
            0
        } else {
            rng.random_range(0..v.len())
        };
        match rng.random_range(0..6) {
            0 if !v.is_empty() => v[at] ^= 1 << rng.random_range(0..8),
            1 => v.truncate(at),
            2 => {
                let digits = [
                    "0",
                    "-1",
                    "4294967296",
                    "18446744073709551615",
                    "1e999",
                    "NaN",
                ];
                let d = digits[rng.random_range(0..digits.len())];
                v.splice(at..at, d.bytes());
            }
            3 if !other.is_empty() => {
                let from = rng.random_range(0..other.len());
                let to = rng.random_range(from..=other.len().min(from + 64));
                v.splice(at..at, other[from..to].iter().copied());
            }
            4 if !v.is_empty() => {
                v[at] = [0u8, 0xff, b'9', b',', b'"', b'}'][rng.random_range(0..6)]
            }
            _ => v.insert(at, rng.random()),
        }
    }
    v
}

#[test]
fn seeded_mutations_of_the_corpus_do_not_panic() {
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    for (name, f) in TARGETS {
        let seeds: Vec<Vec<u8>> = (files(&root().join("corpus").join(name)).iter())
            .map(|p| std::fs::read(p).unwrap())
            .collect();
        for i in 0..1500 {
            let seed = &seeds[i % seeds.len()];
            let other = &seeds[rng.random_range(0..seeds.len())];
            let input = mutate(&mut rng, seed, other);
            replay(name, &format!("mutation-{i}"), *f, &input);
        }
    }
}

/// A header announcing a huge array in a small file is refused before anything is allocated.
#[test]
fn an_npy_header_announcing_a_huge_shape_is_refused() {
    let bytes = std::fs::read(root().join("corpus/npy/huge-shape.npy")).unwrap();
    let e = gpu_train::io::npy::parse_matrix(Path::new("x.npy"), &bytes).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("truncated") && msg.contains("the file holds 8"),
        "{msg}"
    );
    assert_eq!(e.exit_code(), 2);
}

/// Found by fuzzing: a header whose shape multiplies out past 2^64 (npyz multiplied it
/// unchecked), and a version-2 header announcing a 2.4 GB header length (npyz allocated it).
#[test]
fn npy_headers_that_npyz_trusted_are_refused() {
    for (file, want) in [
        (
            "corpus/npy/overflowing-shape.npy",
            "more than 2^64 elements",
        ),
        (
            "regressions/npy/header-length-4gb.npy",
            "truncated: its header announces",
        ),
    ] {
        let bytes = std::fs::read(root().join(file)).unwrap();
        let e = gpu_train::io::npy::parse_matrix(Path::new("x.npy"), &bytes).unwrap_err();
        assert!(e.to_string().contains(want), "{file}: {e}");
    }
}

/// Found by fuzzing: npyz's header parser takes exponential time in the nesting of brackets
/// (24 deep ran past 10 s); such a header is refused at once, while the nesting numpy writes
/// (a structured dtype inside the dict) still parses as far as the dtype check.
#[test]
fn deeply_nested_npy_headers_are_refused_quickly() {
    let bytes = std::fs::read(root().join("regressions/npy/nested-brackets.npy")).unwrap();
    let t = std::time::Instant::now();
    let e = gpu_train::io::npy::parse_matrix(Path::new("x.npy"), &bytes).unwrap_err();
    assert!(e.to_string().contains("nests brackets"), "{e}");
    assert!(t.elapsed().as_secs_f64() < 1.0);
    let header = "{'descr': [('a', '<f4', (2,)), ('b', [('c', '<i4')])], 'fortran_order': False, 'shape': (1, 1), }";
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend((header.len() as u16 + 1).to_le_bytes());
    npy.extend(header.bytes().chain([b'\n']));
    npy.extend([0u8; 12]);
    let e = gpu_train::io::npy::parse_matrix(Path::new("x.npy"), &npy).unwrap_err();
    assert!(e.to_string().contains("is not f32"), "{e}");
}

/// Found in review: headers that passed the pre-check and still overflowed npyz (a key spelled
/// with an escape, and a zero dimension ahead of two huge ones, which npyz's strides multiply
/// without); and a history whose epochs run past 2^64.
#[test]
fn inputs_that_slipped_past_the_first_checks_are_refused() {
    for header in [
        "{'descr': '<f4', 'fortran_order': False, '\\x73hape': (4294967296, 4294967296, 4), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4294967296, 4294967296), }",
    ] {
        let mut npy = b"\x93NUMPY\x01\x00".to_vec();
        npy.extend((header.len() as u16 + 1).to_le_bytes());
        npy.extend(header.bytes().chain([b'\n']));
        let e = gpu_train::io::npy::parse_matrix(Path::new("x.npy"), &npy).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{header}: {e}");
    }
    use gpu_train::io::history::History;
    let csv = format!("epoch,loss\n{},1.0\n0,2.0\n", usize::MAX);
    let e = History::parse(Path::new("h.csv"), &csv)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no further epoch"), "{e}");
    let json = r#"{"tool":"gpu-train","version":"","device":"","first_epoch":1,"loss":[1.0,2.0],"loss_stride":18446744073709551615}"#;
    assert!(History::parse(Path::new("h.json"), json).is_err());
}
