//! The `bitaxe-exporter` binary: parses the command line and hands it to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    bitaxe_exporter::cli::run(bitaxe_exporter::cli::Cli::parse())
}
