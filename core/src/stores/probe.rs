//! The check before a pass: the store answers, and its bucket, container
//! or directory exists. One delimited listing under [`PROBE_PREFIX`], its
//! failure classified (`classify_probe`: missing container, access
//! denied, unreachable); a failure that can pass is asked again a few
//! times before it ends the run.

use std::sync::PoisonError;
use std::time::{Duration, Instant};

use object_store::path::Path;

use crate::base::error::{Error, classify_probe};
use crate::stores::Store;

/// The prefix a probe lists under. A listing of the store's root would
/// read every name of a flat container, page by page (object_store follows
/// every continuation): at 10⁹ objects, hours before a pass or an
/// incremental cutover begins. A listing under a prefix no dataset is
/// expected to hold is one request, answered the same way about the
/// container (missing, refused, unreachable) whatever it holds.
pub const PROBE_PREFIX: &str = ".passeur-probe";

/// How long [`Store::probe`] waits before asking again, after each failure
/// that can pass: the first listing and three more, over 3.5 s.
pub const PROBE_RETRY_WAITS: [Duration; 3] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// How long a store's answer to a probe counts: one command's steps (open,
/// pass, verification) share it; a service's passes minutes apart do not.
pub const PROBE_FRESH: Duration = Duration::from_secs(30);

impl Store {
    /// Check the store answers and the container exists, classifying the
    /// failure (missing container, access denied, unreachable). A failure
    /// that can pass (unreachable: a connection reset while the listing's
    /// answer was read, a 5xx or 429 object_store's retries did not see
    /// through) is asked again after each of [`PROBE_RETRY_WAITS`]; a
    /// missing container or refused credentials are answers, given at once.
    ///
    /// A store (or a clone) that answered a probe less than
    /// [`PROBE_FRESH`] ago is not asked again: a command that opens its
    /// stores, then runs a pass and a verification, lists each once (on
    /// Azurite a listing scans the whole container).
    pub async fn probe(&self) -> Result<(), Error> {
        let last = *self.probed.lock().unwrap_or_else(PoisonError::into_inner);
        if last.is_some_and(|t| t.elapsed() < PROBE_FRESH) {
            return Ok(());
        }
        let mut waits = PROBE_RETRY_WAITS.iter();
        let prefix = Path::from(PROBE_PREFIX);
        loop {
            let err = match self.inner.list_with_delimiter(Some(&prefix)).await {
                Ok(_) => {
                    *self.probed.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some(Instant::now());
                    return Ok(());
                }
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
