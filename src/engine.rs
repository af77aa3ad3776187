//! The pipeline: rows stream in from the input, workers send upgrade calls
//! through the shared pacer, and one collector owns the report and the counts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

use crate::auth::TokenSource;
use crate::config::RunConfig;
use crate::graph::{Answer, GraphClient, TransportError};
use crate::input::{count_rows, InputError, InputFile, Row};
use crate::pacing::Pacer;
use crate::progress::{Progress, Status};
use crate::report::{Outcome, ReportError, ReportWriter, RowResult};
use crate::retry::{is_transient_bad_request, Backoff};
use crate::summary::Summary;

/// Rows read ahead of the workers; enough to keep them fed, small enough
/// that a huge input never sits in memory.
const READ_AHEAD: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("{0}")]
    Auth(#[from] crate::auth::AuthError),
    #[error("cannot set up the HTTP client: {0}")]
    Http(String),
}

/// Counters the workers bump and the progress bar and summary read.
#[derive(Default)]
pub struct LiveCounts {
    pub calls: AtomicU64,
    pub throttled: AtomicU64,
}

/// Run the whole job described by `config`.
pub async fn run(config: &RunConfig) -> Result<Summary, RunError> {
    let started = Instant::now();
    let input = InputFile::open(&config.input)?;
    let total = match config.progress {
        true => Some(count_rows(&config.input)?),
        false => None,
    };
    let http = reqwest::Client::builder()
        .build()
        .map_err(|err| RunError::Http(err.to_string()))?;
    let auth = TokenSource::new(config.credentials.clone(), http.clone());
    // Credentials that do not work are found before the first upgrade call,
    // and before a report is created for a run that cannot start.
    auth.token().await?;
    let report = ReportWriter::create(&config.report)?;

    let worker = Arc::new(Worker {
        graph: GraphClient::new(http, config.target.clone(), config.timeout),
        auth,
        pacer: Pacer::new(config.rate, config.burst),
        max_attempts: config.max_attempts,
        backoff: config.backoff,
        live: LiveCounts::default(),
    });
    let progress = Progress::new(total, config.progress);
    let (results, collected) = mpsc::channel(READ_AHEAD);
    let collector = tokio::spawn(collect(collected, report, progress, worker.clone()));

    let stopped = feed(input, &worker, results, config.concurrency).await;

    let mut summary = collector.await.expect("the collector does not panic")?;
    summary.elapsed = started.elapsed();
    summary.calls = worker.live.calls.load(Ordering::Relaxed);
    summary.throttled = worker.live.throttled.load(Ordering::Relaxed);
    summary.held = worker.pacer.gate().held();
    summary.stopped = stopped.map(|err| err.to_string());
    Ok(summary)
}

/// Read rows on a blocking thread and hand each to a worker task, at most
/// `concurrency` at once. Returns the input error that ended reading early.
async fn feed(
    mut input: InputFile,
    worker: &Arc<Worker>,
    results: mpsc::Sender<RowResult>,
    concurrency: usize,
) -> Option<InputError> {
    let (rows, mut read) = mpsc::channel(READ_AHEAD);
    let reader = tokio::task::spawn_blocking(move || {
        while let Some(row) = input.next_row() {
            let failed = row.is_err();
            if rows.blocking_send(row).is_err() || failed {
                break;
            }
        }
    });

    let slots = Arc::new(Semaphore::new(concurrency));
    let mut stopped = None;
    while let Some(row) = read.recv().await {
        let row = match row {
            Ok(row) => row,
            Err(err) => {
                stopped = Some(err);
                break;
            }
        };
        if let Some(problem) = row.problem.clone() {
            let _ = results
                .send(unsent(row, Outcome::InvalidInput, problem))
                .await;
            continue;
        }
        if let Some(first) = row.duplicate_of {
            let why = format!("same user and installation as line {first}; not sent again");
            let _ = results.send(unsent(row, Outcome::Duplicate, why)).await;
            continue;
        }
        let slot = slots.clone().acquire_owned().await.expect("never closed");
        let worker = worker.clone();
        let results = results.clone();
        tokio::spawn(async move {
            let result = worker.upgrade(row).await;
            drop(slot);
            let _ = results.send(result).await;
        });
    }
    reader.await.expect("the reader does not panic");
    stopped
}

/// The one task that owns the report: writes each row as it arrives, and
/// refreshes the progress bar even while no row finishes (a long wait).
async fn collect(
    mut collected: mpsc::Receiver<RowResult>,
    mut report: ReportWriter,
    progress: Progress,
    worker: Arc<Worker>,
) -> Result<Summary, ReportError> {
    let mut summary = Summary::new(report.path().to_owned());
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            row = collected.recv() => {
                let Some(row) = row else { break };
                report.write(&row)?;
                summary.count(row.outcome);
                progress.row_done();
            }
            _ = tick.tick() => progress.show(&worker.status(&summary)),
        }
    }
    progress.show(&worker.status(&summary));
    progress.finish();
    Ok(summary)
}

/// The report row for an input row that is never sent.
fn unsent(row: Row, outcome: Outcome, problem: String) -> RowResult {
    RowResult {
        line: row.line,
        user: row.user,
        installation: row.installation,
        outcome,
        http_status: None,
        attempts: 0,
        elapsed: Duration::ZERO,
        request_id: None,
        client_request_id: None,
        error_code: None,
        error_message: Some(problem),
    }
}

/// What a worker needs to upgrade one row.
struct Worker {
    graph: GraphClient,
    auth: TokenSource,
    pacer: Pacer,
    max_attempts: u32,
    backoff: Backoff,
    live: LiveCounts,
}

impl Worker {
    fn status(&self, summary: &Summary) -> Status {
        Status {
            not_upgraded: summary.not_upgraded(),
            throttled: self.live.throttled.load(Ordering::Relaxed),
            rate: self.pacer.rate(),
            held_until: self.pacer.gate().closed_until(),
        }
    }

    /// Upgrade one row, retrying as the policy says, and say how it ended.
    async fn upgrade(&self, row: Row) -> RowResult {
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

        loop {
            self.pacer.ready().await;
            // Taken after the pacer's wait, so that a token never ages in a
            // queue before it is used.
            let token = match self.auth.token().await {
                Ok(token) => token,
                Err(err) => return auth_failed(result, err, started),
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
            if !throttled {
                self.pacer.answered();
            }

            let refreshable = !refreshed && self.auth.can_refresh();
            match judge(&attempt, result.attempts, self.max_attempts, !refreshable) {
                Step::Done(outcome) => {
                    result.outcome = outcome;
                    result.elapsed = started.elapsed();
                    return result;
                }
                Step::Refresh => {
                    refreshed = true;
                    self.auth.invalidate(&token).await;
                }
                Step::Retry { hold_run, wait } => {
                    let retry = result.attempts;
                    let wait = wait.unwrap_or_else(|| self.backoff.delay(retry, fastrand::f64()));
                    if throttled {
                        self.live.throttled.fetch_add(1, Ordering::Relaxed);
                        self.pacer.throttled(sent_at, wait);
                    } else if hold_run {
                        self.pacer.hold_for(wait);
                    } else {
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
    }
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
            result.error_code = Some(
                match err.timed_out {
                    true => "timeout",
                    false => "connection_error",
                }
                .to_owned(),
            );
            result.error_message = Some(err.message.clone());
        }
    }
}

fn auth_failed(mut result: RowResult, err: crate::auth::AuthError, started: Instant) -> RowResult {
    result.outcome = Outcome::Unauthorized;
    result.error_code = Some("token_unavailable".into());
    result.error_message = Some(err.to_string());
    result.elapsed = started.elapsed();
    result
}

/// What to do after an attempt.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// The row is settled.
    Done(Outcome),
    /// Get a fresh token and replay the call (once per row).
    Refresh,
    /// Try again after `wait` (or the backoff schedule when `None`). With
    /// `hold_run`, the whole run waits, not only this row.
    Retry {
        hold_run: bool,
        wait: Option<Duration>,
    },
}

/// The retry policy: judge one attempt, given how many attempts the row has
/// used and whether a 401 can no longer be answered with a fresh token.
pub fn judge(
    attempt: &Result<Answer, TransportError>,
    attempts: u32,
    max_attempts: u32,
    refresh_spent: bool,
) -> Step {
    let exhausted = attempts >= max_attempts;
    let answer = match attempt {
        Ok(answer) => answer,
        Err(_) if exhausted => return Step::Done(Outcome::Failed),
        Err(_) => {
            return Step::Retry {
                hold_run: false,
                wait: None,
            }
        }
    };
    let transient = match answer.status {
        401 if !refresh_spent => return Step::Refresh,
        429 | 502 | 503 | 504 => true,
        400 => answer
            .error_message
            .as_deref()
            .is_some_and(is_transient_bad_request),
        _ => false,
    };
    if !transient {
        return Step::Done(Outcome::from_final_status(answer.status));
    }
    if exhausted {
        return Step::Done(match answer.status {
            429 => Outcome::Throttled,
            _ => Outcome::Failed,
        });
    }
    // A 429 closes the window for every worker: calls sent inside it count
    // against the app and prolong the throttling. Any status that names a
    // Retry-After is treated the same way.
    Step::Retry {
        hold_run: answer.status == 429 || answer.retry_after.is_some(),
        wait: answer.retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, retry_after: Option<u64>) -> Result<Answer, TransportError> {
        Ok(Answer {
            status,
            retry_after: retry_after.map(Duration::from_secs),
            ..Answer::default()
        })
    }

    #[test]
    fn success_and_final_client_errors_are_settled_at_once() {
        assert_eq!(
            judge(&answer(204, None), 1, 5, false),
            Step::Done(Outcome::Upgraded)
        );
        assert_eq!(
            judge(&answer(404, None), 1, 5, false),
            Step::Done(Outcome::NotFound)
        );
        assert_eq!(
            judge(&answer(403, None), 1, 5, false),
            Step::Done(Outcome::Forbidden)
        );
        assert_eq!(
            judge(&answer(409, None), 1, 5, false),
            Step::Done(Outcome::Rejected)
        );
    }

    #[test]
    fn a_401_refreshes_once_then_is_final() {
        assert_eq!(judge(&answer(401, None), 1, 5, false), Step::Refresh);
        assert_eq!(
            judge(&answer(401, None), 2, 5, true),
            Step::Done(Outcome::Unauthorized)
        );
    }

    #[test]
    fn a_429_holds_the_whole_run_for_the_announced_wait() {
        assert_eq!(
            judge(&answer(429, Some(3)), 1, 5, false),
            Step::Retry {
                hold_run: true,
                wait: Some(Duration::from_secs(3))
            }
        );
        assert_eq!(
            judge(&answer(429, None), 1, 5, false),
            Step::Retry {
                hold_run: true,
                wait: None
            }
        );
    }

    #[test]
    fn server_errors_and_dropped_connections_back_off_per_row() {
        let dropped = Err(TransportError {
            timed_out: false,
            message: "connection closed".into(),
        });
        let per_row = Step::Retry {
            hold_run: false,
            wait: None,
        };
        assert_eq!(judge(&answer(503, None), 1, 5, false), per_row);
        assert_eq!(judge(&answer(504, None), 1, 5, false), per_row);
        assert_eq!(judge(&dropped, 1, 5, false), per_row);
        assert_eq!(judge(&dropped, 5, 5, false), Step::Done(Outcome::Failed));
    }

    #[test]
    fn used_up_attempts_say_whether_throttling_or_failure_was_last() {
        assert_eq!(
            judge(&answer(429, Some(1)), 5, 5, false),
            Step::Done(Outcome::Throttled)
        );
        assert_eq!(
            judge(&answer(503, Some(1)), 5, 5, false),
            Step::Done(Outcome::Failed)
        );
    }

    #[test]
    fn only_transient_bad_requests_are_retried() {
        let backend = Ok(Answer {
            status: 400,
            error_message: Some("Failed to execute backend request".into()),
            ..Answer::default()
        });
        assert!(matches!(judge(&backend, 1, 5, false), Step::Retry { .. }));
        assert_eq!(judge(&backend, 5, 5, false), Step::Done(Outcome::Failed));
        assert_eq!(
            judge(&answer(400, None), 1, 5, false),
            Step::Done(Outcome::Rejected)
        );
    }
}
