//! Files in and out: .npy arrays, the loss history (CSV), the run summary (JSON). Every file is
//! written to a temporary name beside its destination and renamed into place, so an existing file
//! is only replaced by a complete new one.

pub mod checkpoint;
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
    let mut builder = tempfile::Builder::new();
    builder.prefix(".gpu-train-").suffix(".tmp");
    // Created with the mode of an ordinary new file (0666 less the umask), not the 0600 of a
    // temporary one, since it becomes the user's file.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let tmp = builder.tempfile_in(dir).map_err(|e| Error::io(path, e))?;
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

#[cfg(test)]
mod tests {
    /// A file written here gets the mode of an ordinary new file, not a temporary file's 0600.
    #[cfg(unix)]
    #[test]
    fn atomic_writes_make_ordinary_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.txt");
        super::atomic_write(&p, |w| w.write_all(b"hi")).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        let probe = dir.path().join("probe.txt");
        std::fs::write(&probe, b"x").unwrap();
        let ordinary = std::fs::metadata(&probe).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, ordinary, "{mode:o} vs {ordinary:o}");
        assert_eq!(std::fs::read(&p).unwrap(), b"hi");
    }
}
