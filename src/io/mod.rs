//! Files in and out: .npy arrays, the loss history (CSV), the run summary (JSON). Every file is
//! written to a temporary name beside its destination and renamed into place, so an existing file
//! is only replaced by a complete new one.

pub mod checkpoint;
pub mod data;
pub mod history;
pub mod npy;
pub mod plot;
pub mod summary;

use crate::error::{Error, Result};
#[cfg(not(target_arch = "wasm32"))]
use std::io::BufWriter;
use std::io::Write;
use std::path::Path;

/// Seconds since the Unix epoch now (0 on a clock before it), for the stamps in result files.
pub fn unix_now() -> u64 {
    web_time::SystemTime::now()
        .duration_since(web_time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Write `path` atomically: `fill` writes into a temporary file in the same directory, which is
/// renamed over `path` only once it is complete and flushed to the disk. A failure (a full disk)
/// removes the temporary file and leaves `path` as it was. The temporary file is named
/// `.NAME.PID.XXXXXX.gpu-train.tmp`; one that a killed process left behind is removed by the next
/// write of the same file.
#[cfg(not(target_arch = "wasm32"))]
pub fn atomic_write(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let dir = check_writable(path)?;
    // At most 100 bytes of the name (a file name may have 255), cut at a character boundary.
    let mut name =
        (path.file_name()).map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    while name.len() > 100 {
        name.pop();
    }
    remove_stale_temporaries(dir, &name);
    let mut builder = tempfile::Builder::new();
    let prefix = format!(".{name}.{}.", std::process::id());
    builder.prefix(&prefix).suffix(TEMP_SUFFIX);
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
    // The rename itself, on the disk (where the platform allows a directory to be synced).
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// In the browser there is no file system (std's calls fail with "unsupported"): the page writes
/// to bytes instead ([`checkpoint::model_bytes`], [`npy::to_bytes`]).
#[cfg(target_arch = "wasm32")]
pub fn atomic_write(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let mut bytes = Vec::new();
    fill(&mut bytes).map_err(|e| Error::io(path, e))?;
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

#[cfg(not(target_arch = "wasm32"))]
const TEMP_SUFFIX: &str = ".gpu-train.tmp";

/// Remove the temporary files of writes of `name` in `dir` whose process is gone (killed
/// mid-write): `.NAME.PID.XXXXXX.gpu-train.tmp` with no process PID.
#[cfg(not(target_arch = "wasm32"))]
fn remove_stale_temporaries(dir: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{name}.");
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(rest) = (file.to_str())
            .and_then(|f| f.strip_prefix(&prefix))
            .and_then(|f| f.strip_suffix(TEMP_SUFFIX))
        else {
            continue;
        };
        // Exactly `PID.RANDOM` (another file's temporary, `.NAME.1.PID.X...`, has more parts).
        let pid = match rest.split('.').collect::<Vec<_>>()[..] {
            [pid, random] if random.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                pid.parse::<u32>().ok()
            }
            _ => None,
        };
        if pid.is_some_and(|p| p != std::process::id() && !process_alive(p)) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Whether a process `pid` exists (on other platforms than Unix: assumed so).
#[cfg(not(target_arch = "wasm32"))]
fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return true;
        };
        // SAFETY: signal 0 only checks that the process exists and may be signalled.
        let r = unsafe { libc::kill(pid, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
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

    /// The temporary file of a process that is gone is removed by the next write of the same
    /// file; another file's, or a live process's, is left alone.
    #[cfg(unix)]
    #[test]
    fn stale_temporaries_of_the_same_file_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = dir
            .path()
            .join(format!(".out.txt.{dead}.abc123.gpu-train.tmp"));
        let live = dir
            .path()
            .join(format!(".out.txt.{}.zzz.gpu-train.tmp", std::process::id()));
        let other = dir
            .path()
            .join(format!(".other.txt.{dead}.abc123.gpu-train.tmp"));
        for p in [&stale, &live, &other] {
            std::fs::write(p, b"partial").unwrap();
        }
        super::atomic_write(&dir.path().join("out.txt"), |w| w.write_all(b"hi")).unwrap();
        assert!(!stale.exists() && live.exists() && other.exists());
    }
}
