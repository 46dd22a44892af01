use std::process::ExitCode;

use clap::Parser;
use statushook::cli::Cli;

fn main() -> ExitCode {
    Cli::parse().run()
}
