//! Exit codes of the `passeur` command (documented in README.md).

use passeur_core::Error;

/// Everything listed is at the target.
pub const OK: u8 = 0;
/// The pass ran but something is left undone (failed objects, listing cut).
pub const INCOMPLETE: u8 = 1;
/// Command-line usage error (clap exits with it itself; also an argument
/// that names something absent, such as an unknown `--job`).
pub const USAGE: u8 = 2;
/// `manifest export` / `manifest diff` could not read or compare (as
/// `diff(1)`, whose 0 and 1 mean same and different).
pub const TROUBLE: u8 = 2;
/// The state directory holds another schema version (EX_DATAERR).
pub const SCHEMA: u8 = 65;
/// A store is unreachable or its bucket/container is missing (EX_UNAVAILABLE).
pub const UNAVAILABLE: u8 = 69;
/// Internal error in passeur or its database (EX_SOFTWARE).
pub const SOFTWARE: u8 = 70;
/// The state directory cannot be created, read or written: another
/// process holds it, its disk is full, or its files are damaged
/// (EX_CANTCREAT).
pub const STATE_DIR: u8 = 73;
/// A store refused the credentials (EX_NOPERM).
pub const ACCESS_DENIED: u8 = 77;
/// Invalid URL, option or configuration file (EX_CONFIG).
pub const CONFIG: u8 = 78;
/// Stopped by SIGINT/SIGTERM before the pass finished.
pub const INTERRUPTED: u8 = 130;

/// The exit code for a core error that stopped the command.
pub fn for_error(e: &Error) -> u8 {
    match e {
        Error::InvalidUrl { .. }
        | Error::InvalidOption(_)
        | Error::StateMismatch { .. }
        | Error::TrashOverlap { .. } => CONFIG,
        Error::MissingContainer { .. } | Error::Unreachable { .. } => UNAVAILABLE,
        Error::AccessDenied { .. } => ACCESS_DENIED,
        Error::StateDir { .. } | Error::StateInUse { .. } => STATE_DIR,
        // An I/O error of the database mid-pass: a full disk, a file gone.
        e if e.is_state_io() => STATE_DIR,
        Error::SchemaMismatch { .. } => SCHEMA,
        // A change feed with a gap or a damaged file: nothing past it was
        // replicated; a full pass is the way on.
        Error::ChangeFeed { .. } => INCOMPLETE,
        _ => SOFTWARE,
    }
}
