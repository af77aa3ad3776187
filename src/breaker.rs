//! The circuit breaker: when the same failure that is not about one user
//! hits many rows in a row, the run stops instead of burning the fleet.

use crate::report::{Outcome, RowResult};

/// Counts rows in a row (in finish order) that failed the same way.
pub struct Breaker {
    threshold: u32,
    streak: u32,
    signature: Option<String>,
}

impl Breaker {
    /// A breaker that opens after `threshold` identical failures in a row;
    /// 0 never opens.
    pub fn new(threshold: u32) -> Breaker {
        Breaker {
            threshold,
            streak: 0,
            signature: None,
        }
    }

    /// Look at one finished row; returns why the run should stop, once the
    /// streak reaches the threshold.
    pub fn observe(&mut self, row: &RowResult) -> Option<String> {
        let signature = match row.outcome {
            Outcome::Upgraded => {
                self.streak = 0;
                self.signature = None;
                return None;
            }
            // Per-user answers, pacing, and rows never sent say nothing
            // about the tenant as a whole.
            Outcome::NotFound | Outcome::Throttled | Outcome::InvalidInput | Outcome::Duplicate => {
                return None
            }
            Outcome::Forbidden | Outcome::Unauthorized | Outcome::Rejected | Outcome::Failed => {
                signature_of(row)
            }
        };
        if self.signature.as_ref() == Some(&signature) {
            self.streak += 1;
        } else {
            self.signature = Some(signature);
            self.streak = 1;
        }
        if self.threshold == 0 || self.streak != self.threshold {
            return None;
        }
        Some(format!(
            "the last {} rows all ended {} ({}). That is not about single users: {} \
             Fix it, then resume; rows not yet tried are left for the resume.",
            self.streak,
            row.outcome,
            self.signature.as_deref().unwrap_or_default(),
            hint(row)
        ))
    }
}

fn signature_of(row: &RowResult) -> String {
    let status = row
        .http_status
        .map_or_else(|| "no answer".to_owned(), |s| format!("HTTP {s}"));
    let code = row.error_code.as_deref().unwrap_or("");
    let message = row.error_message.as_deref().unwrap_or("");
    format!("{status} {code}: {message}").trim().to_owned()
}

fn hint(row: &RowResult) -> &'static str {
    match (row.outcome, row.http_status) {
        (Outcome::Forbidden, _) => {
            "check that the app has the application permission \
             TeamsAppInstallation.ReadWriteForUser.All with admin consent; a 403 UnknownError \
             on every call usually means a Microsoft service incident (see the Microsoft 365 \
             service health page)."
        }
        (Outcome::Unauthorized, _) => "check the credentials and the tenant.",
        (_, None) => "check the network and --graph-url (DNS, proxy, firewall).",
        _ => "Graph itself is failing; try again later.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn row(outcome: Outcome, status: Option<u16>, message: &str) -> RowResult {
        RowResult {
            line: 2,
            user: "u".into(),
            installation: "i".into(),
            outcome,
            http_status: status,
            attempts: 1,
            elapsed: Duration::ZERO,
            request_id: None,
            client_request_id: None,
            error_code: Some("Forbidden".into()),
            error_message: Some(message.into()),
        }
    }

    #[test]
    fn the_same_tenant_wide_failure_opens_it_at_the_threshold() {
        let mut breaker = Breaker::new(3);
        let denied = row(Outcome::Forbidden, Some(403), "Missing scope permissions");
        assert_eq!(breaker.observe(&denied), None);
        assert_eq!(breaker.observe(&denied), None);
        let why = breaker.observe(&denied).unwrap();
        assert!(why.contains("last 3 rows"), "{why}");
        assert!(
            why.contains("TeamsAppInstallation.ReadWriteForUser.All"),
            "{why}"
        );
    }

    #[test]
    fn scattered_per_user_failures_never_open_it() {
        let mut breaker = Breaker::new(3);
        for i in 0..100 {
            let upgraded = row(Outcome::Upgraded, Some(204), "");
            let missing = row(Outcome::NotFound, Some(404), "User not found");
            let unlicensed = row(
                Outcome::Forbidden,
                Some(403),
                &format!("User {i} unlicensed"),
            );
            for r in [
                &upgraded,
                &missing,
                &missing,
                &missing,
                &unlicensed,
                &unlicensed,
            ] {
                assert_eq!(breaker.observe(r), None);
            }
        }
    }

    #[test]
    fn a_success_resets_the_streak_and_zero_disables_it() {
        let mut breaker = Breaker::new(2);
        let refused = row(Outcome::Failed, None, "connection refused");
        breaker.observe(&refused);
        breaker.observe(&row(Outcome::Upgraded, Some(204), ""));
        assert_eq!(breaker.observe(&refused), None);
        assert!(breaker.observe(&refused).unwrap().contains("--graph-url"));

        let mut never = Breaker::new(0);
        assert!((0..1000).all(|_| never.observe(&refused).is_none()));
    }
}
