//! What every simulated response carries on the wire: `request-id`, the echoed
//! `client-request-id`, `Date`, and Graph's JSON error body.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::Request;
use axum::http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, DATE};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub(crate) const CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("client-request-id");
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("request-id");

/// The correlation ids of one request, handed to handlers as a request extension.
#[derive(Clone, Debug)]
pub(crate) struct Correlation {
    pub(crate) request_id: String,
    /// What the client sent, if anything.
    pub(crate) sent: Option<String>,
}

impl Correlation {
    /// The `client-request-id` Graph answers with: the client's own, or, when it sent none,
    /// the request id (Graph fills it in rather than leaving it out).
    pub(crate) fn client_request_id(&self) -> &str {
        self.sent.as_deref().unwrap_or(&self.request_id)
    }
}

/// Middleware: gives each request its ids and stamps them and a `Date` on the response.
pub(crate) async fn stamp(mut request: Request, next: Next) -> Response {
    let sent = request
        .headers()
        .get(CLIENT_REQUEST_ID)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let correlation = Correlation {
        request_id: uuid::Uuid::new_v4().to_string(),
        sent,
    };
    request.extensions_mut().insert(correlation.clone());

    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&correlation.request_id) {
        headers.insert(REQUEST_ID, value);
    }
    if let Ok(value) = HeaderValue::from_str(correlation.client_request_id()) {
        headers.insert(CLIENT_REQUEST_ID, value);
    }
    if !headers.contains_key(DATE) {
        set_date(headers, SystemTime::now());
    }
    response
}

fn set_date(headers: &mut HeaderMap, now: SystemTime) {
    if let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(now)) {
        headers.insert(DATE, value);
    }
}

/// Graph's error body, fields in Graph's order.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(rename = "innerError")]
    inner_error: InnerError<'a>,
}

#[derive(Serialize)]
struct InnerError<'a> {
    date: String,
    #[serde(rename = "request-id")]
    request_id: &'a str,
    #[serde(rename = "client-request-id")]
    client_request_id: &'a str,
}

/// A Graph error response: `{"error":{"code","message","innerError":{…}}}`.
pub(crate) fn graph_error(
    status: u16,
    code: &str,
    message: &str,
    correlation: &Correlation,
) -> Response {
    let now = SystemTime::now();
    let body = ErrorBody {
        error: ErrorDetail {
            code,
            message,
            inner_error: InnerError {
                date: iso_date(now),
                request_id: &correlation.request_id,
                client_request_id: correlation.client_request_id(),
            },
        },
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(status, &body, now)
}

/// A JSON response with its `Date` taken at the same moment as any date in the body.
pub(crate) fn json(status: StatusCode, body: &impl Serialize, now: SystemTime) -> Response {
    // These bodies are plain structs of strings and numbers: serializing them cannot fail.
    let text = serde_json::to_string(body).unwrap_or_default();
    let mut response = (status, text).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    set_date(headers, now);
    response
}

/// `2024-05-01T10:20:30`, the form of Graph's `innerError.date` (UTC, no zone suffix).
pub(crate) fn iso_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

// Howard Hinnant's days-to-civil algorithm, for days since 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn iso_date_matches_known_instants() {
        assert_eq!(iso_date(UNIX_EPOCH), "1970-01-01T00:00:00");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_210_096);
        assert_eq!(iso_date(t), "2024-02-29T12:34:56");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(iso_date(t), "2000-02-29T00:00:00");
    }
}
