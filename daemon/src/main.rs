//! The `passeur` executable: everything it does is in the library (see
//! `lib.rs`), so that tests can drive the service in-process.

fn main() -> std::process::ExitCode {
    passeur::main()
}
