//! Retry policy: which answers are worth another attempt, how long Graph asked
//! us to wait (`Retry-After` in every form it uses), and the backoff schedule.

use std::time::{Duration, SystemTime};

use crate::graph::{Answer, TransportError};
use crate::report::Outcome;

/// The longest `Retry-After` we accept as given. Graph has been seen asking
/// for 315 s; anything past an hour is more likely a parsing accident than a
/// real window, and waiting it out would stall a whole migration.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Parse a `Retry-After` value: whole seconds (`5`), decimal seconds
/// (`2.128`), or an HTTP-date. `now` is the local clock, used for dates.
///
/// Returns `None` for values that are none of these; the caller then falls
/// back to exponential backoff. Never rounds down: a decimal is kept to the
/// nanosecond, a date in the past means "now".
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs: f64 = value.parse().ok()?;
        if !secs.is_finite() || secs < 0.0 {
            return None;
        }
        return Some(Duration::from_secs_f64(secs).min(MAX_RETRY_AFTER));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    let wait = date.duration_since(now).unwrap_or(Duration::ZERO);
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Exponential backoff with jitter, for answers that carry no `Retry-After`.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The ceiling of the wait before retry number `retry` (1 for the first
    /// retry): `base * 2^(retry-1)`, capped.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The wait before retry number `retry`, given a uniform sample `unit`
    /// in `[0, 1)`. Half the ceiling is fixed and half is jitter, so waits
    /// spread out across workers without ever collapsing to zero.
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(retry);
        let half = ceiling / 2;
        half + half.mul_f64(unit.clamp(0.0, 1.0))
    }
}

/// A `400` is normally final, but bulk installs meet `400`s whose message
/// names a failing backend or settings store; those clear on their own.
/// These are the only message texts we branch on.
pub fn is_transient_bad_request(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    ["backend", "settings store", "settingsstore", "try again"]
        .iter()
        .any(|signature| message.contains(signature))
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
        Err(err) if err.local => return Step::Done(Outcome::Rejected),
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

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn whole_seconds_are_read_as_seconds() {
        assert_eq!(parse_retry_after("5", at(0)), Some(Duration::from_secs(5)));
        assert_eq!(
            parse_retry_after(" 41 ", at(0)),
            Some(Duration::from_secs(41))
        );
    }

    #[test]
    fn decimal_seconds_are_never_rounded_down() {
        let wait = parse_retry_after("2.128", at(0)).unwrap();
        assert!(wait >= Duration::from_millis(2128), "{wait:?}");
        assert!(wait < Duration::from_millis(2129), "{wait:?}");
        let wait = parse_retry_after("0.249", at(0)).unwrap();
        assert!(wait >= Duration::from_millis(249), "{wait:?}");
    }

    #[test]
    fn http_date_is_measured_from_now() {
        let now = at(1_800_000_000);
        let date = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(7)));
    }

    #[test]
    fn http_date_in_the_past_means_now() {
        let now = at(1_800_000_000);
        let date = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&date, now), Some(Duration::ZERO));
    }

    #[test]
    fn garbage_and_negative_values_are_not_a_wait() {
        for value in ["", "soon", "-1", "1.2.3", "NaN", "inf"] {
            assert_eq!(parse_retry_after(value, at(0)), None, "{value:?}");
        }
    }

    #[test]
    fn absurd_waits_are_capped() {
        let wait = parse_retry_after("999999999", at(0)).unwrap();
        assert_eq!(wait, MAX_RETRY_AFTER);
    }

    #[test]
    fn backoff_doubles_then_stops_at_the_cap() {
        let backoff = Backoff::default();
        let ceilings: Vec<u64> = (1..=9)
            .map(|retry| backoff.ceiling(retry).as_millis() as u64)
            .collect();
        assert_eq!(
            ceilings,
            [500, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]
        );
        assert_eq!(backoff.ceiling(200), backoff.cap);
    }

    #[test]
    fn backoff_jitter_stays_between_half_and_full_ceiling() {
        let backoff = Backoff::default();
        for retry in 1..10 {
            let ceiling = backoff.ceiling(retry);
            assert_eq!(backoff.delay(retry, 0.0), ceiling / 2);
            assert!(backoff.delay(retry, 0.999) <= ceiling);
            assert!(backoff.delay(retry, 0.5) > ceiling / 2);
        }
    }

    #[test]
    fn only_documented_transient_400_messages_are_retried() {
        assert!(is_transient_bad_request(
            "Failed to execute backend request."
        ));
        assert!(is_transient_bad_request("Settings store failure"));
        assert!(!is_transient_bad_request("Invalid installation id"));
        assert!(!is_transient_bad_request(""));
    }

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
            local: false,
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
    fn a_request_that_cannot_be_built_is_never_retried() {
        let unbuildable = Err(TransportError {
            timed_out: false,
            local: true,
            message: "builder error".into(),
        });
        assert_eq!(
            judge(&unbuildable, 1, 8, false),
            Step::Done(Outcome::Rejected)
        );
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
