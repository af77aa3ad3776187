//! The Graph client: builds each request's URL with every segment encoded,
//! sends one attempt, and reads back what support needs (status, ids, error
//! body) and, for reads, the body.

use std::time::{Duration, SystemTime};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;

use crate::pacing::RequestClass;
use crate::retry::parse_retry_after;

/// Everything but RFC 3986's unreserved characters is encoded, so `/ + = #
/// $ '` and `@` travel inside their segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A query value: everything but unreserved characters encoded, so that the
/// quotes and spaces of a `$filter` arrive as written.
const QUERY: &AsciiSet = SEGMENT;

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
        format!("{}/upgrade", self.installation_url(user, installation))
    }

    fn installed_apps(&self, user: &str) -> String {
        format!(
            "{}/{}/{}/teamwork/installedApps",
            self.root,
            self.version,
            user_segment(user)
        )
    }

    fn installation_url(&self, user: &str, installation: &str) -> String {
        format!(
            "{}/{}",
            self.installed_apps(user),
            utf8_percent_encode(installation, SEGMENT)
        )
    }

    /// `POST …/installedApps/{installation}/upgrade`, no body.
    pub fn upgrade(&self, user: &str, installation: &str) -> Request {
        Request::post(self.upgrade_url(user, installation), None)
    }

    /// `GET …/installedApps/{installation}` with the version it runs.
    pub fn installation(&self, user: &str, installation: &str) -> Request {
        let url = self.installation_url(user, installation);
        Request::get(
            format!("{url}?$expand=teamsAppDefinition"),
            RequestClass::InstalledAppsRead,
        )
    }

    /// The first page of a user's installations of one catalog app, with
    /// the version each runs.
    pub fn find_installation(&self, user: &str, app_id: &str) -> Request {
        let filter = format!("teamsApp/id eq '{}'", app_id.replace('\'', "''"));
        let url = format!(
            "{}?$expand=teamsAppDefinition&$filter={}",
            self.installed_apps(user),
            utf8_percent_encode(&filter, QUERY)
        );
        Request::get(url, RequestClass::InstalledAppsRead)
    }

    /// A next page, from `@odata.nextLink`. Only links on this Graph root
    /// are followed: the token must never travel to another host.
    pub fn next_page(&self, link: &str, class: RequestClass) -> Option<Request> {
        let ours = link
            .get(..self.root.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(&self.root))
            && link[self.root.len()..].starts_with('/');
        ours.then(|| Request::get(link.to_owned(), class))
    }

    /// The catalog entry of one app with all its versions.
    pub fn catalog_app(&self, app_id: &str) -> Request {
        let filter = format!("id eq '{}'", app_id.replace('\'', "''"));
        let url = format!(
            "{}/{}/appCatalogs/teamsApps?$filter={}&$expand=appDefinitions",
            self.root,
            self.version,
            utf8_percent_encode(&filter, QUERY)
        );
        Request::get(url, RequestClass::CatalogRead)
    }

    /// `POST …/installedApps`: install the app's newest published version.
    pub fn install(&self, user: &str, app_id: &str) -> Request {
        let bind = format!(
            "{}/{}/appCatalogs/teamsApps/{}",
            self.root,
            self.version,
            utf8_percent_encode(app_id, SEGMENT)
        );
        let body = serde_json::json!({ "teamsApp@odata.bind": bind }).to_string();
        Request::post(self.installed_apps(user), Some(body))
    }
}

/// One request, ready to be sent as often as the retry policy says.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: reqwest::Method,
    pub url: String,
    /// A JSON body; sent with `Content-Type: application/json`.
    pub body: Option<String>,
    /// The budget Graph counts it against.
    pub class: RequestClass,
}

impl Request {
    fn get(url: String, class: RequestClass) -> Request {
        Request {
            method: reqwest::Method::GET,
            url,
            body: None,
            class,
        }
    }

    fn post(url: String, body: Option<String>) -> Request {
        Request {
            method: reqwest::Method::POST,
            url,
            body,
            class: RequestClass::InstalledAppsWrite,
        }
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
    /// The body of a successful answer (empty for a 204).
    pub body: Vec<u8>,
}

/// An attempt that got no HTTP answer.
#[derive(Clone, Debug)]
pub struct TransportError {
    pub timed_out: bool,
    /// The request could not even be built (a value no URL can hold):
    /// sending it again would fail the same way.
    pub local: bool,
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

    pub fn target(&self) -> &GraphTarget {
        &self.target
    }

    /// Send one attempt of `request`.
    pub async fn send(
        &self,
        request: &Request,
        token: &str,
        client_request_id: &str,
    ) -> Result<Answer, TransportError> {
        let builder = self
            .http
            .request(request.method.clone(), &request.url)
            .bearer_auth(token)
            .header("client-request-id", client_request_id)
            .timeout(self.timeout);
        let builder = match &request.body {
            Some(body) => builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone()),
            None if request.method == reqwest::Method::POST => {
                builder.header(reqwest::header::CONTENT_LENGTH, "0")
            }
            None => builder,
        };
        let sent = builder.send().await;
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
        let success = response.status().is_success();
        // A body that cannot be read still leaves the status to judge by.
        let body = response.bytes().await.unwrap_or_default();
        if success {
            answer.body = body.to_vec();
        } else {
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
    let local = err.is_builder();
    let err = err.without_url();
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    TransportError {
        timed_out,
        local,
        message,
    }
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
    fn reads_ask_for_the_version_and_filter_on_the_app() {
        let app = "5d1ab7e8-0b4e-4a1f-9c1e-0c2a8f1c9e11";
        let one = target().installation("a@b.com", "x/y=");
        assert_eq!(one.class, RequestClass::InstalledAppsRead);
        assert!(
            one.url.ends_with(
                "/users/a%40b.com/teamwork/installedApps/x%2Fy%3D?$expand=teamsAppDefinition"
            ),
            "{}",
            one.url
        );
        let find = target().find_installation("a@b.com", app);
        assert!(
            find.url.ends_with(&format!(
                "installedApps?$expand=teamsAppDefinition&$filter=teamsApp%2Fid%20eq%20%27{app}%27"
            )),
            "{}",
            find.url
        );
        let catalog = target().catalog_app(app);
        assert_eq!(catalog.class, RequestClass::CatalogRead);
        assert!(catalog
            .url
            .contains("/v1.0/appCatalogs/teamsApps?$filter=id%20eq%20%27"));
        let install = target().install("a@b.com", app);
        assert_eq!(install.method, reqwest::Method::POST);
        assert!(install.body.unwrap().contains(&format!(
            "https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/{app}"
        )));
    }

    #[test]
    fn next_links_are_followed_only_on_the_same_graph() {
        let graph = target();
        let class = RequestClass::InstalledAppsRead;
        let ours = "https://graph.microsoft.com/v1.0/users/a/teamwork/installedApps?$skiptoken=x";
        assert!(graph.next_page(ours, class).is_some());
        for foreign in [
            "https://graph.microsoft.com.evil.example/v1.0/x",
            "https://evil.example/v1.0/x",
            "http://graph.microsoft.com/v1.0/x",
        ] {
            assert!(graph.next_page(foreign, class).is_none(), "{foreign}");
        }
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
