//! The `keel` binary: parse the command line, set up logging, hand over to `cli::run`.
//!
//! The binary's allocator is jemalloc, configured in `.cargo/config.toml` to return freed
//! memory to the system within a second. glibc's malloc keeps the pages a thread freed in that
//! thread's arena: applying a revision of 10,000 deployments left the agent 100 MB larger after
//! each of its first revisions (docs/benchmarks.md).

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = keel::cli::Cli::parse();
    match keel::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
