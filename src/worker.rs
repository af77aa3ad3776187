//! One row's life: wait for the pacer, send, judge the answer, retry or
//! settle. Workers share the pacer, the token cache and the stop control.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::auth::{AuthError, TokenSource};
use crate::graph::{Answer, GraphClient, TransportError};
use crate::input::Row;
use crate::pacing::{Budgets, RequestClass};
use crate::progress::Status;
use crate::report::{Outcome, RowResult};
use crate::retry::{judge, Backoff, Step};
use crate::slots::Slots;
use crate::stop::{StopControl, Stopped};

/// Counters the workers bump and the progress bar and summary read.
#[derive(Default)]
pub struct LiveCounts {
    pub calls: AtomicU64,
    pub throttled: AtomicU64,
}

/// What every worker shares.
pub struct Worker {
    pub graph: GraphClient,
    pub auth: TokenSource,
    pub budgets: Budgets,
    pub slots: Slots,
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub live: LiveCounts,
    pub control: Arc<StopControl>,
}

impl Worker {
    pub fn status(&self, not_upgraded: u64) -> Status {
        Status {
            not_upgraded,
            throttled: self.live.throttled.load(Ordering::Relaxed),
            rate: self.writes().rate(),
            held_until: self.writes().gate().closed_until(),
        }
    }

    /// The pacer of the upgrade calls.
    pub fn writes(&self) -> &crate::pacing::Pacer {
        self.budgets.of(RequestClass::InstalledAppsWrite)
    }

    /// Upgrade one row, retrying as the policy says, and say how it ended.
    /// `None` when the run stopped before the row was settled: it is left
    /// out of the report, for a resume to pick up.
    pub async fn upgrade(&self, row: Row) -> Option<RowResult> {
        let started = Instant::now();
        let mut result = RowResult {
            line: row.line,
            user: row.user,
            installation: row.installation,
            outcome: Outcome::Failed,
            http_status: None,
            attempts: 0,
            elapsed: Duration::ZERO,
            request_id: None,
            client_request_id: None,
            error_code: None,
            error_message: None,
        };
        let mut refreshed = false;
        let pacer = self.writes();

        loop {
            tokio::select! {
                _ = pacer.ready() => {}
                _ = self.control.stopped() => return None,
            }
            if self.control.is_stopped() {
                return None;
            }
            // Taken after the pacer's wait, so that a token never ages in a
            // queue before it is used.
            let token = match self.auth.token().await {
                Ok(token) => token,
                Err(err) => return self.auth_failed(result, err, started),
            };
            let client_request_id = uuid::Uuid::new_v4().to_string();
            let sent_at = Instant::now();
            result.attempts += 1;
            self.live.calls.fetch_add(1, Ordering::Relaxed);
            let attempt = self
                .graph
                .upgrade(
                    &result.user,
                    &result.installation,
                    token.value.expose(),
                    &client_request_id,
                )
                .await;
            record_attempt(&mut result, &attempt, client_request_id);
            let throttled = attempt.as_ref().is_ok_and(|a| a.status == 429);
            if attempt.is_ok() {
                self.slots.observe(sent_at.elapsed());
            }
            if !throttled {
                pacer.answered();
            }

            let refreshable = !refreshed && self.auth.can_refresh();
            match judge(&attempt, result.attempts, self.max_attempts, !refreshable) {
                Step::Done(Outcome::Unauthorized) => {
                    // A token that was just replaced, or cannot be, was
                    // refused: every other row would be refused too.
                    self.control
                        .stop(Stopped::AuthBroken(self.unauthorized_hint(&result)));
                    return Some(settle(result, Outcome::Unauthorized, started));
                }
                Step::Done(outcome) => return Some(settle(result, outcome, started)),
                Step::Refresh => {
                    refreshed = true;
                    self.auth.invalidate(&token).await;
                }
                Step::Retry { hold_run, wait } => {
                    let retry = result.attempts;
                    let wait = wait.unwrap_or_else(|| self.backoff.delay(retry, fastrand::f64()));
                    if throttled {
                        self.live.throttled.fetch_add(1, Ordering::Relaxed);
                        pacer.throttled(sent_at, wait);
                    } else if hold_run {
                        pacer.hold_for(wait);
                    } else {
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = self.control.stopped() => return None,
                        }
                    }
                }
            }
        }
    }

    fn unauthorized_hint(&self, result: &RowResult) -> String {
        let graph_said = format!(
            "Graph answered 401 {}: {}",
            result.error_code.as_deref().unwrap_or(""),
            result.error_message.as_deref().unwrap_or("")
        );
        match self.auth.can_refresh() {
            true => format!(
                "{graph_said}, even to a freshly issued token. Check that the token is for this \
                 Graph (--graph-url matches --authority-url's cloud) and the right tenant, \
                 and that the app has TeamsAppInstallation.ReadWriteForUser.All with admin \
                 consent."
            ),
            false => format!(
                "{graph_said}. The token in GRAPH_TOKEN has probably expired (tokens last about \
                 an hour): get a fresh one, or use --tenant/--client-id so fleetup can renew it, \
                 then resume."
            ),
        }
    }

    fn auth_failed(
        &self,
        mut result: RowResult,
        err: AuthError,
        started: Instant,
    ) -> Option<RowResult> {
        self.control.stop(Stopped::AuthBroken(err.to_string()));
        if result.attempts == 0 {
            // Never sent: leave the row for the resume.
            return None;
        }
        result.error_code = Some("token_unavailable".into());
        result.error_message = Some(err.to_string());
        Some(settle(result, Outcome::Unauthorized, started))
    }
}

fn settle(mut result: RowResult, outcome: Outcome, started: Instant) -> RowResult {
    result.outcome = outcome;
    result.elapsed = started.elapsed();
    result
}

fn record_attempt(
    result: &mut RowResult,
    attempt: &Result<Answer, TransportError>,
    client_request_id: String,
) {
    result.client_request_id = Some(client_request_id);
    match attempt {
        Ok(answer) => {
            result.http_status = Some(answer.status);
            result.request_id = answer.request_id.clone();
            result.error_code = answer.error_code.clone();
            result.error_message = answer.error_message.clone();
        }
        Err(err) => {
            result.http_status = None;
            result.request_id = None;
            let code = match err.timed_out {
                true => "timeout",
                false => "connection_error",
            };
            result.error_code = Some(code.to_owned());
            result.error_message = Some(err.message.clone());
        }
    }
}
