//! systemd notifications (sd_notify): READY=1 once the jobs' state
//! directories are open and their stores answer, WATCHDOG=1 at half the
//! watchdog interval, STATUS= with one line of progress, RELOADING=1 and
//! STOPPING=1. Without NOTIFY_SOCKET (not under systemd) nothing is sent.

use std::time::Duration;

use sd_notify::NotifyState;

/// Sends notifications when systemd asked for them.
#[derive(Debug, Clone, Copy)]
pub struct Notifier {
    enabled: bool,
}

impl Notifier {
    /// From the environment systemd sets.
    pub fn from_env() -> Self {
        Self {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some(),
        }
    }

    /// How often to send WATCHDOG=1 (half of WatchdogSec), if asked.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        let mut usec = 0;
        (self.enabled && sd_notify::watchdog_enabled(false, &mut usec) && usec > 0)
            .then(|| Duration::from_micros(usec / 2))
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if self.enabled
            && let Err(e) = sd_notify::notify(false, states)
        {
            tracing::warn!(error = %e, "sd_notify failed");
        }
    }

    /// Start-up is complete.
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// One line of progress.
    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    /// Keep-alive.
    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    /// Reading the configuration again.
    pub fn reloading(&self) {
        let now = NotifyState::monotonic_usec_now();
        match now {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    /// Shutting down.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }
}
