//! The `keygate` command; see the `keygate_cli` library for what it does.

fn main() -> std::process::ExitCode {
    keygate_cli::main()
}
