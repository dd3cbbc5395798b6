//! The `blueshift` binary: a thin shell that parses arguments and runs the leader, a compute
//! node, a whole local cluster (`local`: one leader and N compute processes on loopback), or
//! the SQL client (`sql`).
//! Settings come from flags, then `BLUESHIFT_*` environment variables, then a TOML file.

mod config;
mod local;
mod sql;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "blueshift",
    version,
    about = "Blueshift: a distributed MPP SQL data warehouse"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a leader and N compute nodes on this machine, as separate processes.
    Local(local::LocalArgs),
    /// Run the leader node (PostgreSQL protocol, catalog, planner).
    Leader(Box<config::LeaderArgs>),
    /// Run a compute node that joins a leader.
    Compute(config::ComputeArgs),
    /// A psql-style SQL client (interactive, -c or -f; aligned, CSV or JSON output).
    Sql(sql::SqlArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        // Statements are planned on this runtime: sqlparser's and DataFusion's planners
        // recurse per nesting level, and a deep statement must get an error, not overflow
        // tokio's 2 MiB default and abort the process (only touched pages are used).
        .thread_stack_size(blueshift_common::runtime::THREAD_STACK_BYTES)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("blueshift: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if !matches!(cli.command, Command::Sql(_)) {
        // The server processes create their files for their own OS user only: the catalog
        // and raft log hold users' secrets, the TLS key is a key (0600 files, 0700 dirs).
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    }
    let result = runtime.block_on(async {
        match cli.command {
            Command::Local(args) => local::run(args).await,
            Command::Leader(args) => config::run_leader(*args).await,
            Command::Compute(args) => config::run_compute(args).await,
            Command::Sql(args) => sql::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("blueshift: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    Signals::listen().next().await;
}

/// SIGINT and SIGTERM, listened to from creation on (a signal that arrives before `next`
/// is polled is not lost).
pub struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    pub fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    /// The next SIGINT or SIGTERM (never, if neither could be listened to).
    pub async fn next(&mut self) {
        #[cfg(unix)]
        {
            async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                _ = recv(&mut self.term) => {}
                _ = recv(&mut self.int) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

pub fn default_data_dir() -> PathBuf {
    PathBuf::from("./blueshift-data")
}
