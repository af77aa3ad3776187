//! The Graph client: builds the upgrade URL with every segment encoded, sends
//! one attempt, and reads back what support needs (status, ids, error body).

use std::time::{Duration, SystemTime};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;

use crate::retry::parse_retry_after;

/// Everything but RFC 3986's unreserved characters is encoded, so `/ + = #
/// $ '` and `@` travel inside their segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Where Graph is and which API version to call.
#[derive(Clone, Debug)]
pub struct GraphTarget {
    /// Root without a trailing slash, e.g. `https://graph.microsoft.com`.
    pub root: String,
    /// `v1.0` or `beta`.
    pub version: String,
}

impl GraphTarget {
    /// The upgrade URL for one user's installation.
    pub fn upgrade_url(&self, user: &str, installation: &str) -> String {
        format!(
            "{}/{}/{}/teamwork/installedApps/{}/upgrade",
            self.root,
            self.version,
            user_segment(user),
            utf8_percent_encode(installation, SEGMENT)
        )
    }
}

/// The path to one user. A UPN that starts with `$` would be read by Graph
/// as an OData option, so it goes in the key form `users('…')`, where a
/// quote is written twice.
fn user_segment(user: &str) -> String {
    if user.starts_with('$') {
        let quoted = user.replace('\'', "''");
        format!("users('{}')", utf8_percent_encode(&quoted, SEGMENT))
    } else {
        format!("users/{}", utf8_percent_encode(user, SEGMENT))
    }
}

/// What Graph answered to one attempt.
#[derive(Clone, Debug, Default)]
pub struct Answer {
    pub status: u16,
    pub request_id: Option<String>,
    pub date: Option<String>,
    pub retry_after: Option<Duration>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

/// An attempt that got no HTTP answer.
#[derive(Clone, Debug)]
pub struct TransportError {
    pub timed_out: bool,
    pub message: String,
}

/// Sends upgrade calls.
#[derive(Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    target: GraphTarget,
    timeout: Duration,
}

impl GraphClient {
    pub fn new(http: reqwest::Client, target: GraphTarget, timeout: Duration) -> GraphClient {
        GraphClient {
            http,
            target,
            timeout,
        }
    }

    /// Send one upgrade attempt.
    pub async fn upgrade(
        &self,
        user: &str,
        installation: &str,
        token: &str,
        client_request_id: &str,
    ) -> Result<Answer, TransportError> {
        let url = self.target.upgrade_url(user, installation);
        let sent = self
            .http
            .post(url)
            .bearer_auth(token)
            .header("client-request-id", client_request_id)
            .header(reqwest::header::CONTENT_LENGTH, "0")
            .timeout(self.timeout)
            .send()
            .await;
        let response = sent.map_err(transport_error)?;

        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let mut answer = Answer {
            status: response.status().as_u16(),
            request_id: header("request-id"),
            date: header("date"),
            retry_after: header("retry-after")
                .and_then(|v| parse_retry_after(&v, SystemTime::now())),
            ..Answer::default()
        };
        if !response.status().is_success() {
            // A body that cannot be read still leaves the status to judge by.
            let body = response.bytes().await.unwrap_or_default();
            let (code, message) = error_of(&body);
            answer.error_code = code;
            answer.error_message = message;
        }
        Ok(answer)
    }
}

fn transport_error(err: reqwest::Error) -> TransportError {
    use std::error::Error;
    // reqwest's own message is terse ("error sending request"); the cause
    // chain says what actually happened (refused, reset, closed early).
    let timed_out = err.is_timeout();
    let err = err.without_url();
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    TransportError { timed_out, message }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// Graph's error code and message, from its JSON error body. A body that is
/// not Graph's shape keeps its first characters as the message.
pub fn error_of(body: &[u8]) -> (Option<String>, Option<String>) {
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(parsed) => (
            non_empty(parsed.error.code),
            non_empty(parsed.error.message),
        ),
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text: String = text.trim().chars().take(200).collect();
            (None, non_empty(Some(text)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> GraphTarget {
        GraphTarget {
            root: "https://graph.microsoft.com".into(),
            version: "v1.0".into(),
        }
    }

    #[test]
    fn every_reserved_character_stays_inside_its_segment() {
        let url = target().upgrade_url("a@b.com", "ab/c+d=e#f$g'h i");
        assert_eq!(
            url,
            "https://graph.microsoft.com/v1.0/users/a%40b.com/teamwork/installedApps/\
             ab%2Fc%2Bd%3De%23f%24g%27h%20i/upgrade"
        );
    }

    #[test]
    fn guest_upns_keep_their_ext_marker() {
        let url = target().upgrade_url("jo_fabrikam.com#EXT#@contoso.onmicrosoft.com", "x");
        assert!(url.contains("/users/jo_fabrikam.com%23EXT%23%40contoso.onmicrosoft.com/"));
    }

    #[test]
    fn a_dollar_upn_goes_in_the_key_form_with_quotes_doubled() {
        let url = target().upgrade_url("$o'neil@contoso.com", "x");
        assert!(
            url.contains("/users('%24o%27%27neil%40contoso.com')/teamwork/"),
            "{url}"
        );
    }

    #[test]
    fn graph_error_bodies_give_code_and_message() {
        let body = br#"{"error":{"code":"NotFound","message":"User not found","innerError":{}}}"#;
        assert_eq!(
            error_of(body),
            (Some("NotFound".into()), Some("User not found".into()))
        );
        let empty = br#"{"error":{"code":"","message":""}}"#;
        assert_eq!(error_of(empty), (None, None));
        assert_eq!(
            error_of(b"<html>Bad gateway</html>").1.unwrap(),
            "<html>Bad gateway</html>"
        );
        assert_eq!(error_of(b""), (None, None));
    }
}
