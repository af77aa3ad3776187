//! Why and how a run ends before its input does: Ctrl-C or SIGTERM, broken
//! authentication, the circuit breaker, or an input that stops being readable.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

/// How long calls already in flight may take to finish after a Ctrl-C.
pub const GRACE: Duration = Duration::from_secs(10);

/// The reason a run stopped early.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// Graph refused a token that could not be replaced, or the token
    /// endpoint stopped answering.
    AuthBroken(String),
    /// The same failure, not about any one user, hit many rows in a row.
    Breaker(String),
    /// The input could not be read any further.
    Input(String),
    /// Graph lists the app for none of the first users: the app probably
    /// holds only the "Self" permissions, which hide other apps.
    NothingVisible(String),
}

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stopped::Interrupted => f.write_str("interrupted"),
            Stopped::AuthBroken(why) => write!(f, "authentication is broken: {why}"),
            Stopped::Breaker(why) => write!(f, "circuit breaker opened: {why}"),
            Stopped::Input(why) => write!(f, "the input could not be read further: {why}"),
            Stopped::NothingVisible(why) => write!(f, "no installation is visible: {why}"),
        }
    }
}

/// Shared by the feeder, the workers and the collector. The first reason
/// given wins; `abandon` ends the wait for calls still in flight.
#[derive(Default)]
pub struct StopControl {
    reason: Mutex<Option<Stopped>>,
    abandoned: Mutex<bool>,
    changed: Notify,
}

impl StopControl {
    pub fn stop(&self, reason: Stopped) {
        let mut current = self.reason.lock().expect("stop lock");
        if current.is_none() {
            tracing::warn!("stopping: {reason}");
            *current = Some(reason);
        }
        self.changed.notify_waiters();
    }

    pub fn reason(&self) -> Option<Stopped> {
        self.reason.lock().expect("stop lock").clone()
    }

    pub fn is_stopped(&self) -> bool {
        self.reason.lock().expect("stop lock").is_some()
    }

    /// Stop waiting for calls in flight: the report keeps what it has.
    pub fn abandon(&self) {
        *self.abandoned.lock().expect("stop lock") = true;
        self.changed.notify_waiters();
    }

    pub fn is_abandoned(&self) -> bool {
        *self.abandoned.lock().expect("stop lock")
    }

    /// Resolves once the run has been told to stop.
    pub async fn stopped(&self) {
        loop {
            let notified = self.changed.notified();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }

    /// Resolves once the run has been told to abandon calls in flight.
    pub async fn abandoned(&self) {
        loop {
            let notified = self.changed.notified();
            if self.is_abandoned() {
                return;
            }
            notified.await;
        }
    }
}

/// Turn Ctrl-C and SIGTERM into a stop: the first lets calls in flight
/// finish within [`GRACE`], a second one (or the end of the grace) abandons
/// them.
pub async fn watch_signals(control: std::sync::Arc<StopControl>) {
    interrupt().await;
    tracing::warn!(
        "interrupted: no new rows start; calls in flight get {}s to finish. \
         Press Ctrl-C again to stop at once.",
        GRACE.as_secs()
    );
    control.stop(Stopped::Interrupted);
    tokio::select! {
        _ = interrupt() => {}
        _ = tokio::time::sleep(GRACE) => {}
    }
    control.abandon();
}

#[cfg(unix)]
async fn interrupt() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

#[cfg(not(unix))]
async fn interrupt() {
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_reason_wins_and_waiters_wake() {
        let control = std::sync::Arc::new(StopControl::default());
        let waiter = tokio::spawn({
            let control = control.clone();
            async move { control.stopped().await }
        });
        control.stop(Stopped::Breaker("403".into()));
        control.stop(Stopped::Interrupted);
        waiter.await.unwrap();
        assert_eq!(control.reason(), Some(Stopped::Breaker("403".into())));
        assert!(!control.is_abandoned());
    }
}
