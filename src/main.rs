//! The `gpu-train` binary: parse, set up logging, run, map errors to exit codes
//! (2 bad input, 3 divergence, 1 anything else).

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Output piped into a program that stops reading (`| head`) ends the process quietly, as
    // for any command-line tool, instead of panicking on the failed write.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // A file-size limit (`ulimit -f`) makes a write past it fail with "File too large", reported
    // like a full disk, instead of killing the process with SIGXFSZ mid-write.
    #[cfg(unix)]
    // SAFETY: as above.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = gpu_train::cli::Cli::parse();
    match gpu_train::app::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
