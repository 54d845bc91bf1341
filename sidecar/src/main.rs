//! The `sidecar` binary: everything happens in the library; the command line lives in `cli`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
