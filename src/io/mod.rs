//! Files in and out: .npy arrays, the loss history (CSV), the run summary (JSON). Every file is
//! written to a temporary name beside its destination and renamed into place, so an existing file
//! is only replaced by a complete new one.

pub mod data;
pub mod history;
pub mod npy;
pub mod summary;

use crate::error::{Error, Result};
use std::io::{BufWriter, Write};
use std::path::Path;

/// Write `path` atomically: `fill` writes into a temporary file in the same directory, which is
/// renamed over `path` only once it is complete and flushed.
pub fn atomic_write(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let dir = check_writable(path)?;
    let tmp = tempfile::Builder::new()
        .prefix(".gpu-train-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| Error::io(path, e))?;
    {
        let mut w = BufWriter::new(tmp.as_file());
        fill(&mut w).map_err(|e| Error::io(path, e))?;
        w.flush().map_err(|e| Error::io(path, e))?;
    }
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Check, before any work is done, that `path` can be written: its directory exists. Returns the
/// directory.
pub fn check_writable(path: &Path) -> Result<&Path> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Error::BadFile {
            path: path.to_path_buf(),
            msg: format!(
                "cannot write here: directory {} does not exist",
                dir.display()
            ),
        });
    }
    if path.is_dir() {
        return Err(Error::BadFile {
            path: path.to_path_buf(),
            msg: "is a directory; expected a file name".into(),
        });
    }
    Ok(dir)
}

/// Create `dir` (and its parents) for a directory-valued output flag.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::BadFile {
        path: dir.to_path_buf(),
        msg: format!("cannot create this output directory ({e})"),
    })
}
