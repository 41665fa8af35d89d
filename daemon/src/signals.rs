//! Signals mapped to what they mean for passeur.

use futures::stream::StreamExt;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_tokio::Signals;

/// What a received signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Stop taking work, finish what is in flight, exit.
    Stop,
    /// Second stop request: exit now.
    Quit,
    /// SIGHUP: read the configuration again (`passeur run`).
    Reload,
}

/// Install handlers for SIGINT and SIGTERM; returns a stream of requests
/// (first signal → Stop, any later one → Quit).
pub fn requests() -> std::io::Result<(
    impl futures::Stream<Item = Request>,
    signal_hook_tokio::Handle,
)> {
    let signals = Signals::new([SIGINT, SIGTERM])?;
    let handle = signals.handle();
    let stream = signals
        .enumerate()
        .map(|(i, _sig)| if i == 0 { Request::Stop } else { Request::Quit });
    Ok((stream, handle))
}

/// As [`requests`], plus SIGHUP → Reload (for `passeur run`).
pub fn service_requests() -> std::io::Result<(
    impl futures::Stream<Item = Request>,
    signal_hook_tokio::Handle,
)> {
    let signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let handle = signals.handle();
    let mut stops = 0;
    let stream = signals.map(move |sig| {
        if sig == SIGHUP {
            Request::Reload
        } else {
            stops += 1;
            if stops == 1 {
                Request::Stop
            } else {
                Request::Quit
            }
        }
    });
    Ok((stream, handle))
}
