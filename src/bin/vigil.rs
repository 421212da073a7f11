//! The `vigil` command. All the work is in [`vigil::cli`].

fn main() -> std::process::ExitCode {
    vigil::cli::main()
}
