//! `berth`: see the library for everything; this only hands over to the CLI.

fn main() -> std::process::ExitCode {
    berth::cli::main()
}
