//! The command line: `start`, `check` and `version`, with MOSN's `-c/--config` habit and a
//! `--log-level` override. Config errors exit with 64 (`EX_USAGE`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sidecar::config::{Config, LogLevel};
use tracing::{error, info};

/// `EX_USAGE` from sysexits.h: the config is unusable.
const EX_USAGE: u8 = 64;
/// `EX_CANTCREAT`: the log file cannot be created.
const EX_CANTCREAT: u8 = 73;
/// The proxy failed at run time.
const EX_RUNTIME: u8 = 1;

/// A MOSN-compatible RPC sidecar whose protocol codecs are Wasm plugins.
#[derive(Debug, Parser)]
#[command(name = "sidecar", version, about)]
struct Cli {
    /// Log level, overriding the config's default_log_level
    /// (TRACE, DEBUG, INFO, WARN, ERROR; CRITICAL and FATAL mean ERROR).
    #[arg(long, global = true, value_parser = parse_level, value_name = "LEVEL")]
    log_level: Option<LogLevel>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the config, set up logging and run the proxy until SIGINT/SIGTERM.
    Start {
        /// MOSN-format JSON config file.
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: PathBuf,
    },
    /// Validate the config and print what it sets up; exit non-zero if it is broken.
    Check {
        /// MOSN-format JSON config file.
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: PathBuf,
    },
    /// Print the version.
    Version,
}

fn parse_level(s: &str) -> Result<LogLevel, String> {
    s.parse()
        .map_err(|()| format!("unknown log level {s:?} (TRACE, DEBUG, INFO, WARN, ERROR)"))
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("sidecar {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Check { config } => check(&config),
        Command::Start { config } => start(&config, cli.log_level),
    }
}

fn load(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("error: {}: {}", path.display(), error_chain(&e));
        ExitCode::from(EX_USAGE)
    })
}

/// Validates the config as `start` would: parses it, loads and compiles every plugin into
/// the plan, and starts one instance of each codec; prints the summary and the warnings.
fn check(path: &Path) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(e) = sidecar::plan::Plan::build(&config).and_then(|plan| plan.start_codecs()) {
        eprintln!("error: {}: {}", path.display(), error_chain(&e));
        return ExitCode::from(EX_USAGE);
    }
    print!("{}", config.summary());
    for w in &config.warnings {
        println!("warning: {w}");
    }
    println!("config OK: {}", path.display());
    ExitCode::SUCCESS
}

fn start(path: &Path, level: Option<LogLevel>) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let log = match sidecar::logging::init(&config.server.log, level) {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            return ExitCode::from(EX_CANTCREAT);
        }
    };
    sidecar::logging::report_warnings(&config.warnings);
    info!(config = %path.display(), version = env!("CARGO_PKG_VERSION"), "starting");
    match sidecar::server::run(config, Some(log)) {
        Ok(()) => {
            info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e @ sidecar::server::RunError::Plan(_)) => {
            // A plugin that does not load is a config error, as `check` reports it.
            error!(cause = %error_chain(&e), "sidecar failed");
            eprintln!("error: {}: {}", path.display(), error_chain(&e));
            ExitCode::from(EX_USAGE)
        }
        Err(e) => {
            error!(cause = %error_chain(&e), "sidecar failed");
            ExitCode::from(EX_RUNTIME)
        }
    }
}

/// An error with its sources, `outer: inner: innermost`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        // thiserror messages often embed their source already.
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
