//! Records the git commit the binary is built from (for `gpu-train bench` results), where git and
//! the repository are there; otherwise the results say none.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let out = Command::new("git")
        .args(["describe", "--always", "--dirty", "--exclude", "*"])
        .output();
    if let Ok(o) = out {
        let commit = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if o.status.success() && !commit.is_empty() {
            println!("cargo:rustc-env=GPU_TRAIN_GIT_COMMIT={commit}");
        }
    }
}
