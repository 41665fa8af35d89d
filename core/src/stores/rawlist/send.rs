//! Sending one signed request of the raw lister (a listing page, an
//! upload listing, a PUT carrying the source's MD5) through the store's
//! HTTP client, tried again where another try can succeed.

use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::RetryConfig;
use object_store::aws::AwsAuthorizer;
use object_store::azure::AzureAuthorizer;
use object_store::client::HttpRequest;

use super::{RawLister, Signer, err};

/// Requests tried this many times on a transport error or a 5xx / 429.
const ATTEMPTS: u32 = 5;

/// A request's final answer: its status, headers and whole body.
pub(super) struct Answer {
    pub(super) status: http::StatusCode,
    pub(super) headers: http::HeaderMap,
    pub(super) body: Bytes,
}

impl RawLister {
    /// A signed GET's final answer (see [`RawLister::exchange`]).
    pub(super) async fn answer(
        &self,
        url: &str,
    ) -> object_store::Result<(http::StatusCode, Bytes)> {
        let a = self
            .exchange("listing", None, || {
                http::Request::get(url)
                    .body(Bytes::new().into())
                    .map_err(|e| err(format!("list request: {e}")))
            })
            .await?;
        Ok((a.status, a.body))
    }

    /// The final answer to the request `make` builds (afresh for every
    /// try), signed with an unsigned payload: transport errors, 429 and
    /// 5xx but 501 are tried again — [`ATTEMPTS`] in all, or, with
    /// `retry`, as the store's retry settings say (`max-retries`,
    /// `retry-timeout`, object_store's back-off) — and any other status
    /// is returned. `what`: the request, for the message when every try
    /// failed.
    pub(super) async fn exchange(
        &self,
        what: &str,
        retry: Option<&RetryConfig>,
        make: impl Fn() -> object_store::Result<HttpRequest>,
    ) -> object_store::Result<Answer> {
        let started = Instant::now();
        let attempts = retry.map_or(ATTEMPTS, |r| {
            u32::try_from(r.max_retries.saturating_add(1)).unwrap_or(u32::MAX)
        });
        let mut last = String::new();
        for attempt in 0..attempts {
            if attempt > 0 {
                let wait = match retry {
                    None => Duration::from_millis(200 << attempt),
                    Some(r) if started.elapsed() >= r.retry_timeout => break,
                    Some(r) => {
                        let b = &r.backoff;
                        let exp = i32::try_from(attempt - 1).unwrap_or(i32::MAX);
                        b.init_backoff.mul_f64(b.base.powi(exp)).min(b.max_backoff)
                    }
                };
                tokio::time::sleep(wait).await;
            }
            let mut req = make()?;
            match &self.signer {
                Signer::S3 {
                    credentials,
                    region,
                } => {
                    let c = credentials.get_credential().await?;
                    AwsAuthorizer::new(&c, "s3", region)
                        .with_sign_payload(false)
                        .try_authorize(&mut req, None)?;
                }
                Signer::Azure {
                    credentials,
                    account,
                } => {
                    let c = credentials.get_credential().await?;
                    AzureAuthorizer::new(&c, account).try_authorize(&mut req)?;
                }
            }
            let resp = match self.client.execute(req).await {
                Ok(r) => r,
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
            let (parts, body) = resp.into_parts();
            // A body cut short (a reset, an answer under its length) is
            // retried like a failed request.
            let body = match body.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    last = format!("answer body: {e}");
                    continue;
                }
            };
            let status = parts.status;
            // 501 Not Implemented will be answered again.
            let again =
                (status.is_server_error() && status.as_u16() != 501) || status.as_u16() == 429;
            if !again {
                return Ok(Answer {
                    status,
                    headers: parts.headers,
                    body,
                });
            }
            last = refusal(status, &body);
        }
        Err(err(format!("{what} {}: {last}", self.base)))
    }
}

/// A refused request's status and the start of its answer.
pub(super) fn refusal(status: http::StatusCode, body: &[u8]) -> String {
    format!(
        "{status}: {}",
        String::from_utf8_lossy(body)
            .chars()
            .take(300)
            .collect::<String>()
    )
}
