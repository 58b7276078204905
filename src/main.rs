//! `gophergate`: parse the command line, set up logging, run. Everything else lives in the library.

use clap::Parser;
use gophergate::cli::{Cli, run};
use tracing_subscriber::EnvFilter;

/// jemalloc instead of glibc's malloc: allocation and freeing were about a fifth of the gateway's
/// CPU per request with glibc (BENCHMARKS.md has the profile and the before/after figures).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
