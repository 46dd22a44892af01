use std::process::ExitCode;

use clap::Parser;
use statushook::cli::Cli;

/// mimalloc instead of the system allocator: the writer and the request handlers allocate
/// small buffers at a high rate, and glibc's malloc took a fifth of the writer's time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    Cli::parse().run()
}
