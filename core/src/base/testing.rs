//! Helpers shared by the crate's unit tests.

use super::error::Error;

/// A failed test set-up step (`what`), as the crate's error.
pub(crate) fn setup_err(what: &str, source: std::io::Error) -> Error {
    Error::Io {
        what: format!("test set-up: {what}"),
        source,
    }
}

/// A temporary directory, its failure an `Error` like the rest.
pub(crate) fn tempdir() -> Result<tempfile::TempDir, Error> {
    tempfile::tempdir().map_err(|e| setup_err("temporary directory", e))
}
