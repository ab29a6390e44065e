//! Starts the packet path until `iwf run --config FILE` is wired in main.rs:
//! `iwf-dp --config config/lab.toml` (or `iwf-dp config/lab.toml`).
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = match args.as_slice() {
        [flag, path] if flag == "--config" => path.clone(),
        [path] if !path.starts_with('-') => path.clone(),
        _ => {
            eprintln!("usage: iwf-dp --config FILE");
            return ExitCode::from(2);
        }
    };
    match iwf::dataplane::run(&path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("iwf: {e}");
            ExitCode::FAILURE
        }
    }
}
