//! The check before a pass: the store answers, and its bucket, container
//! or directory exists. One delimited listing, its failure classified
//! (`classify_probe`: missing container, access denied, unreachable); a
//! failure that can pass is asked again a few times before it ends the
//! run.

use std::time::Duration;

use crate::base::error::{Error, classify_probe};
use crate::stores::Store;

/// How long [`Store::probe`] waits before asking again, after each failure
/// that can pass: the first listing and three more, over 3.5 s.
pub const PROBE_RETRY_WAITS: [Duration; 3] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

impl Store {
    /// Check the store answers and the container exists, classifying the
    /// failure (missing container, access denied, unreachable). A failure
    /// that can pass (unreachable: a connection reset while the listing's
    /// answer was read, a 5xx or 429 object_store's retries did not see
    /// through) is asked again after each of [`PROBE_RETRY_WAITS`]; a
    /// missing container or refused credentials are answers, given at once.
    pub async fn probe(&self) -> Result<(), Error> {
        let mut waits = PROBE_RETRY_WAITS.iter();
        loop {
            let err = match self.inner.list_with_delimiter(None).await {
                Ok(_) => return Ok(()),
                Err(e) => classify_probe(&self.url, e),
            };
            match (&err, waits.next()) {
                (Error::Unreachable { .. }, Some(wait)) => {
                    // Info: a command's stderr stays one line per problem.
                    tracing::info!(
                        store = %self.url,
                        retry_in = ?wait,
                        error = %err,
                        "probe failed; asking again"
                    );
                    tokio::time::sleep(*wait).await;
                }
                _ => return Err(err),
            }
        }
    }
}
