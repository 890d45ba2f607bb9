//! Every shader as the kernels compile it: the files of `shaders/` composed with the preludes they
//! need. Embedded at compile time; with `GPU_TRAIN_SHADER_DIR=DIR` every command composes them from
//! DIR's files instead (the same names as in `shaders/`), so that whoever edits a kernel changes the
//! WGSL and runs `verify`, without a rebuild.

use crate::error::{Error, Result};
use std::path::PathBuf;
use std::sync::OnceLock;

macro_rules! file {
    ($path:literal) => {
        ($path, include_str!(concat!("../../../shaders/", $path)))
    };
}

/// The files of `shaders/`, embedded, by their path under it.
const FILES: [(&str, &str); 18] = [
    file!("codes.wgsl"),
    file!("activation.wgsl"),
    file!("optimizer.wgsl"),
    file!("schedule.wgsl"),
    file!("matmul.wgsl"),
    file!("bias_update.wgsl"),
    file!("loss_reduce.wgsl"),
    file!("cross_entropy.wgsl"),
    file!("gather.wgsl"),
    file!("matmul_naive.wgsl"),
    file!("layout/texels/matmul.wgsl"),
    file!("layout/texels/bias_update.wgsl"),
    file!("layout/texels/cross_entropy.wgsl"),
    file!("layout/texels/gather.wgsl"),
    file!("layout/buffer/matmul.wgsl"),
    file!("layout/buffer/bias_update.wgsl"),
    file!("layout/buffer/cross_entropy.wgsl"),
    file!("layout/buffer/gather.wgsl"),
];

/// Each kernel (its stem and, where it touches matrices, its layout) and the files it is composed
/// of, in order. `codes.wgsl` (the named codes the kernels switch on) goes in front of every kernel
/// that switches on one; `optimizer.wgsl` in front of the kernels that update parameters,
/// `activation.wgsl` in front of the matmul, `schedule.wgsl` and `loss_reduce.wgsl` (its uniform
/// block, bindings and reduction) in front of the loss reductions (which compute each step's
/// learning rate); the layout's prelude in front of every kernel that touches a matrix.
pub const KERNELS: [(&str, &[&str]); 10] = [
    (
        "matmul texels",
        &[
            "codes.wgsl",
            "activation.wgsl",
            "optimizer.wgsl",
            "layout/texels/matmul.wgsl",
            "matmul.wgsl",
        ],
    ),
    (
        "matmul buffer",
        &[
            "codes.wgsl",
            "activation.wgsl",
            "optimizer.wgsl",
            "layout/buffer/matmul.wgsl",
            "matmul.wgsl",
        ],
    ),
    (
        "bias_update texels",
        &[
            "codes.wgsl",
            "optimizer.wgsl",
            "layout/texels/bias_update.wgsl",
            "bias_update.wgsl",
        ],
    ),
    (
        "bias_update buffer",
        &[
            "codes.wgsl",
            "optimizer.wgsl",
            "layout/buffer/bias_update.wgsl",
            "bias_update.wgsl",
        ],
    ),
    (
        "cross_entropy texels",
        &[
            "codes.wgsl",
            "schedule.wgsl",
            "loss_reduce.wgsl",
            "layout/texels/cross_entropy.wgsl",
            "cross_entropy.wgsl",
        ],
    ),
    (
        "cross_entropy buffer",
        &[
            "codes.wgsl",
            "schedule.wgsl",
            "loss_reduce.wgsl",
            "layout/buffer/cross_entropy.wgsl",
            "cross_entropy.wgsl",
        ],
    ),
    (
        "gather texels",
        &["layout/texels/gather.wgsl", "gather.wgsl"],
    ),
    (
        "gather buffer",
        &["layout/buffer/gather.wgsl", "gather.wgsl"],
    ),
    ("matmul_naive", &["matmul_naive.wgsl"]),
    (
        "loss_reduce",
        &["codes.wgsl", "schedule.wgsl", "loss_reduce.wgsl"],
    ),
];

/// The composed source of every kernel of [`KERNELS`], in its order.
#[derive(Debug, Clone)]
pub struct Sources {
    texts: Vec<String>,
    /// Where they were read from: None for the embedded copies.
    pub dir: Option<PathBuf>,
}

impl Sources {
    /// The copies embedded at compile time.
    pub fn embedded() -> Sources {
        let (texts, _) = compose(|name| Ok(embedded_file(name).to_string()))
            .expect("every kernel's files are embedded");
        Sources { texts, dir: None }
    }

    /// Composed from `dir`'s files, each checked by naga: a file that is missing or that does not
    /// compile is an error naming it (and naga's message, at the file's own line).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_dir(dir: &std::path::Path) -> Result<Sources> {
        let (texts, read) = compose(|name| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|e| Error::BadFile {
                path,
                msg: format!("GPU_TRAIN_SHADER_DIR: cannot read it: {e}"),
            })
        })?;
        for ((kernel, files), text) in KERNELS.iter().zip(&texts) {
            let parts: Vec<(&str, &str)> = (files.iter())
                .map(|&f| (f, read.iter().find(|(n, _)| *n == f).map_or("", |(_, t)| t)))
                .collect();
            check(dir, kernel, &parts, text)?;
        }
        Ok(Sources {
            texts,
            dir: Some(dir.to_path_buf()),
        })
    }

    /// The composed source of `kernel` (a name of [`KERNELS`]).
    pub fn get(&self, kernel: &str) -> &str {
        let i = (KERNELS.iter().position(|(k, _)| *k == kernel))
            .unwrap_or_else(|| panic!("no kernel named {kernel:?}"));
        &self.texts[i]
    }

    /// Every kernel's name and composed source.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        (KERNELS.iter().map(|(k, _)| *k)).zip(self.texts.iter().map(String::as_str))
    }
}

fn embedded_file(name: &str) -> &'static str {
    (FILES.iter().find(|(f, _)| *f == name))
        .map(|(_, text)| *text)
        .unwrap_or_else(|| panic!("no embedded shader file {name:?}"))
}

/// Every kernel's files read by `read` (each file once) and concatenated in order; and the files
/// as read.
type Composed = (Vec<String>, Vec<(&'static str, String)>);

fn compose(mut read: impl FnMut(&str) -> Result<String>) -> Result<Composed> {
    let mut files: Vec<(&str, String)> = Vec::new();
    let mut texts = Vec::with_capacity(KERNELS.len());
    for (_, parts) in KERNELS {
        let mut text = String::new();
        for &part in parts {
            if !files.iter().any(|(f, _)| *f == part) {
                files.push((part, read(part)?));
            }
            let (_, t) = files.iter().find(|(f, _)| *f == part).expect("read above");
            text.push_str(t);
        }
        texts.push(text);
    }
    Ok((texts, files))
}

/// `text` (kernel `kernel`, composed of `parts`: each file's name and text, in order) parsed and
/// validated by naga; an error names the file and the line in it.
#[cfg(not(target_arch = "wasm32"))]
fn check(dir: &std::path::Path, kernel: &str, parts: &[(&str, &str)], text: &str) -> Result<()> {
    let fail = |line: Option<usize>, msg: String| {
        // The file that holds composed line `line` (1-based), and the line within it.
        let mut first = 1;
        let mut at = (parts.last().map_or("", |(f, _)| *f), None);
        if let Some(line) = line {
            for &(f, t) in parts {
                let n = t.lines().count();
                if line < first + n {
                    at = (f, Some(line + 1 - first));
                    break;
                }
                first += n;
            }
        }
        let (file, within) = at;
        let line = within.map_or_else(String::new, |l| format!("line {l}: "));
        Error::BadFile {
            path: dir.join(file),
            msg: format!("GPU_TRAIN_SHADER_DIR: {line}{msg} (in the {kernel} kernel)"),
        }
    };
    let module = naga::front::wgsl::parse_str(text).map_err(|e| {
        let line = e.location(text).map(|l| l.line_number as usize);
        fail(line, e.message().to_string())
    })?;
    let mut validator = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    );
    validator.validate(&module).map_err(|e| {
        // The innermost span (an expression, rather than its function), and every cause.
        let line = (e.spans().last()).map(|(span, _)| span.location(text).line_number as usize);
        let mut msg = e.as_inner().to_string();
        let mut cause = std::error::Error::source(e.as_inner());
        while let Some(c) = cause {
            msg = format!("{msg}: {c}");
            cause = c.source();
        }
        fail(line, msg)
    })?;
    Ok(())
}

/// What every device compiles: the embedded copies, or, where `GPU_TRAIN_SHADER_DIR` is set, DIR's
/// (read once per process, and said so on stderr).
pub fn current() -> Result<&'static Sources> {
    static CURRENT: OnceLock<std::result::Result<Sources, (PathBuf, String)>> = OnceLock::new();
    let loaded = CURRENT.get_or_init(|| match shader_dir() {
        None => Ok(Sources::embedded()),
        #[cfg(not(target_arch = "wasm32"))]
        Some(dir) => {
            eprintln!(
                "notice: GPU_TRAIN_SHADER_DIR: composing the shaders from {} (not the embedded \
                 copies)",
                dir.display()
            );
            Sources::from_dir(&dir).map_err(|e| match e {
                Error::BadFile { path, msg } => (path, msg),
                e => (dir, e.to_string()),
            })
        }
        #[cfg(target_arch = "wasm32")]
        Some(_) => Ok(Sources::embedded()),
    });
    loaded.as_ref().map_err(|(path, msg)| Error::BadFile {
        path: path.clone(),
        msg: msg.clone(),
    })
}

/// `GPU_TRAIN_SHADER_DIR`, where set and not empty.
fn shader_dir() -> Option<PathBuf> {
    std::env::var_os("GPU_TRAIN_SHADER_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    fn shaders_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("shaders")
    }

    /// A copy of `shaders/` with `edit` (file, text, replacement) applied.
    fn copy(edit: Option<(&str, &str, &str)>) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        for (name, text) in FILES {
            let path = tmp.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let text = match edit {
                Some((file, from, to)) if file == name => {
                    assert!(text.contains(from), "{name} lacks {from:?}");
                    text.replacen(from, to, 1)
                }
                _ => text.to_string(),
            };
            std::fs::write(path, text).unwrap();
        }
        tmp
    }

    /// Every file of `shaders/` is embedded, and every embedded file is part of a kernel: a
    /// directory of the same files is all a kernel can be composed from.
    #[test]
    fn every_shader_file_is_embedded_and_used() {
        let mut on_disk = Vec::new();
        let mut dirs = vec![shaders_dir()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let path = e.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    let rel = path.strip_prefix(shaders_dir()).unwrap();
                    on_disk.push(rel.to_str().unwrap().replace('\\', "/"));
                }
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = FILES.iter().map(|(f, _)| f.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
        for (f, _) in FILES {
            assert!(
                KERNELS.iter().any(|(_, parts)| parts.contains(&f)),
                "{f} is part of no kernel"
            );
        }
    }

    /// The same files from a directory compose the same sources, to the byte (the tuning cache's
    /// hash stays the same too).
    #[test]
    fn a_copy_of_the_shaders_composes_the_embedded_sources() {
        let from_dir = Sources::from_dir(&shaders_dir()).unwrap();
        let embedded = Sources::embedded();
        for ((name, a), (_, b)) in from_dir.iter().zip(embedded.iter()) {
            assert_eq!(a, b, "{name}");
        }
        assert_eq!(from_dir.iter().count(), KERNELS.len());
        // An edit reaches the kernels composed of that file, and only those.
        let tmp = copy(Some((
            "optimizer.wgsl",
            "return p - lr * g;",
            "return p + lr * g;",
        )));
        let edited = Sources::from_dir(tmp.path()).unwrap();
        for ((name, a), (_, b)) in edited.iter().zip(embedded.iter()) {
            let has = KERNELS
                .iter()
                .any(|(k, p)| *k == name && p.contains(&"optimizer.wgsl"));
            assert_eq!(a != b, has, "{name}");
        }
    }

    #[test]
    fn a_missing_file_is_named() {
        let tmp = copy(None);
        std::fs::remove_file(tmp.path().join("layout/buffer/gather.wgsl")).unwrap();
        let e = Sources::from_dir(tmp.path()).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = e.to_string();
        assert!(
            e.contains("layout/buffer/gather.wgsl") && e.contains("GPU_TRAIN_SHADER_DIR"),
            "{e}"
        );
    }

    /// A syntax error and a type error are named by file and by the line in that file (not in the
    /// composed source), with naga's message.
    #[test]
    fn a_broken_file_is_named_at_its_line() {
        let line_of = |file: &str, text: &str| {
            let (_, src) = FILES.iter().find(|(f, _)| *f == file).unwrap();
            src.lines().position(|l| l.contains(text)).unwrap() + 1
        };
        let file = "layout/buffer/matmul.wgsl";
        let (_, src) = FILES.iter().find(|(f, _)| *f == file).unwrap();
        let target = src
            .lines()
            .find(|l| l.contains("fn "))
            .unwrap()
            .trim()
            .to_string();
        let tmp = copy(Some((file, &target, &format!("{target} let = ;"))));
        let e = Sources::from_dir(tmp.path()).unwrap_err().to_string();
        let line = line_of(file, &target);
        assert!(
            e.contains(file) && e.contains(&format!("line {line}:")),
            "{e}"
        );
        // A well-formed file whose types are wrong: validation, not parsing, fails.
        let tmp = copy(Some((
            "optimizer.wgsl",
            "return p - lr * g;",
            "return p - lr * g + 1u;",
        )));
        let e = Sources::from_dir(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("optimizer.wgsl"), "{e}");
        assert!(
            e.contains(&format!(
                "line {}:",
                line_of("optimizer.wgsl", "return p - lr * g;")
            )),
            "{e}"
        );
    }
}
