//! The `bitaxe-exporter` binary: parses the command line and hands it to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    match bitaxe_exporter::cli::Cli::try_parse() {
        Ok(cli) => bitaxe_exporter::cli::run(cli),
        Err(error) => bitaxe_exporter::cli::argument_error(&error),
    }
}
