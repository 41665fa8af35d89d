//! The `passeur` executable: everything it does is in the library (see
//! `lib.rs`), so that tests can drive the service in-process.

fn main() -> std::process::ExitCode {
    // Before any thread: the arenas it bounds are those created after it.
    passeur_malloc::cap_arenas();
    passeur::main()
}
