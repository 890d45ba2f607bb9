//! The `gpu-train` binary: parse, set up logging, run, map errors to exit codes
//! (2 bad input, 3 divergence, 1 anything else).

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
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
