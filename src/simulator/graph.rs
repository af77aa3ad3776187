//! The Graph routes: reading the upgrade path one segment at a time as Graph does, and
//! answering in Graph's order: books, auth, throttle, request checks, faults, fleet, latency.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use percent_encoding::percent_decode_str;

use super::auth::{self, Refusal};
use super::fleet::Behaviour;
use super::server::{lock, Shared};
use super::throttle::Verdict;
use super::wire::{self, Correlation};

/// An upgrade path as Graph reads it, each segment decoded on its own.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UpgradePath {
    pub(crate) version: String,
    pub(crate) user: String,
    pub(crate) installation: String,
    /// Why Graph would refuse the path as written, if it would (answered as a 400).
    pub(crate) problem: Option<String>,
}

/// What a request path turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    Upgrade(UpgradePath),
    /// Any other Graph path; carries the segment Graph would say it could not resolve.
    Other {
        version: String,
        segment: String,
    },
    /// A segment whose percent-encoding is not valid UTF-8.
    Undecodable,
}

/// The fallback handler: every path that is not the token endpoint or `/_sim/…` is Graph's.
pub(crate) async fn route(
    State(shared): State<Arc<Shared>>,
    Extension(correlation): Extension<Correlation>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // The raw path: axum has decoded nothing yet, so `%2F` is still inside its segment.
    match parse(uri.path()) {
        Route::Upgrade(path) if method == Method::POST => {
            upgrade(&shared, &correlation, path, &headers, &body).await
        }
        Route::Upgrade(path) => {
            let message = format!("The HTTP method '{method}' is not allowed for this resource.");
            refuse_other(
                &shared,
                &correlation,
                &path.version,
                &headers,
                405,
                &message,
            )
        }
        Route::Other { version, segment } => {
            let message = format!("Resource not found for the segment '{segment}'.");
            refuse_other(&shared, &correlation, &version, &headers, 400, &message)
        }
        Route::Undecodable => wire::graph_error(
            400,
            "BadRequest",
            "The request URI is not valid.",
            &correlation,
        ),
    }
}

/// Splits and decodes a raw path. `+` stays `+`: paths are not form-encoded.
pub(crate) fn parse(raw: &str) -> Route {
    let Some(segments) = decode_segments(raw) else {
        return Route::Undecodable;
    };
    match segments.as_slice() {
        [version, users, user, teamwork, apps, installation, upgrade]
            if is(users, "users") && is_upgrade_tail(teamwork, apps, upgrade) =>
        {
            let problem = plain_user_problem(user);
            UpgradePath::route(version, user.clone(), installation, problem)
        }
        [version, key, teamwork, apps, installation, upgrade]
            if is_upgrade_tail(teamwork, apps, upgrade) =>
        {
            keyed(version, key, installation)
        }
        [version, rest @ ..] => Route::Other {
            version: version.clone(),
            segment: first_unknown(rest),
        },
        [] => Route::Other {
            version: String::new(),
            segment: String::new(),
        },
    }
}

/// Each segment decoded on its own, or `None` if one is not UTF-8 once decoded.
fn decode_segments(raw: &str) -> Option<Vec<String>> {
    let path = raw.strip_prefix('/').unwrap_or(raw);
    path.split('/')
        .map(|s| {
            percent_decode_str(s)
                .decode_utf8()
                .ok()
                .map(|s| s.into_owned())
        })
        .collect()
}

/// Graph's fixed segments are case-insensitive.
fn is(segment: &str, name: &str) -> bool {
    segment.eq_ignore_ascii_case(name)
}

fn is_upgrade_tail(teamwork: &str, apps: &str, upgrade: &str) -> bool {
    is(teamwork, "teamwork") && is(apps, "installedApps") && is(upgrade, "upgrade")
}

impl UpgradePath {
    fn route(version: &str, user: String, installation: &str, problem: Option<String>) -> Route {
        let problem = problem.or_else(|| empty_problem(installation, "installedApps"));
        Route::Upgrade(UpgradePath {
            version: version.to_string(),
            user,
            installation: installation.to_string(),
            problem,
        })
    }
}

/// The key form, `users('…')`, which clients use for UPNs that start with `$`.
fn keyed(version: &str, key: &str, installation: &str) -> Route {
    let Some(inner) = key_body(key) else {
        let (version, segment) = (version.to_string(), key.to_string());
        return Route::Other { version, segment };
    };
    match unquote(inner) {
        Some(user) => UpgradePath::route(version, user, installation, None),
        None => {
            let problem = format!("Syntax error in the key of segment '{key}'.");
            UpgradePath::route(version, inner.to_string(), installation, Some(problem))
        }
    }
}

/// Graph reads a plain segment that starts with `$` as an OData system query option, not a key.
fn plain_user_problem(user: &str) -> Option<String> {
    if user.starts_with('$') {
        return Some(format!("Resource not found for the segment '{user}'."));
    }
    empty_problem(user, "users")
}

fn empty_problem(key: &str, collection: &str) -> Option<String> {
    key.is_empty().then(|| {
        format!(
            "The request URI is not valid. Since the segment '{collection}' refers to a \
             collection, this must be the last segment in the request URI or it must be followed \
             by an function or action that can be bound to it otherwise all intermediate segments \
             must refer to a single resource."
        )
    })
}

/// The inside of `users(…)`, if the segment has that shape.
fn key_body(segment: &str) -> Option<&str> {
    let prefix = segment.get(..6)?;
    if !prefix.eq_ignore_ascii_case("users(") {
        return None;
    }
    segment[6..].strip_suffix(')')
}

/// An OData string literal: `'…'` with `''` standing for one `'`.
fn unquote(literal: &str) -> Option<String> {
    let body = literal.strip_prefix('\'')?.strip_suffix('\'')?;
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c == '\'' && chars.next() != Some('\'') {
            return None;
        }
        out.push(c);
    }
    Some(out)
}

/// The segment Graph would name when a path is not the upgrade call.
fn first_unknown(rest: &[String]) -> String {
    let expected = [
        Some("users"),
        None,
        Some("teamwork"),
        Some("installedApps"),
        None,
        Some("upgrade"),
    ];
    for (i, segment) in rest.iter().enumerate() {
        match expected.get(i) {
            Some(Some(name)) if segment.eq_ignore_ascii_case(name) => {}
            Some(None) => {}
            _ => return segment.clone(),
        }
    }
    rest.last().cloned().unwrap_or_default()
}

fn valid_version(version: &str) -> bool {
    version == "v1.0" || version == "beta"
}

fn bad_version(version: &str, correlation: &Correlation) -> Response {
    wire::graph_error(
        400,
        "BadRequest",
        &format!("Invalid version: {version}"),
        correlation,
    )
}

/// A Graph call the simulator does not serve: still versioned and authenticated like Graph.
fn refuse_other(
    shared: &Shared,
    correlation: &Correlation,
    version: &str,
    headers: &HeaderMap,
    status: u16,
    message: &str,
) -> Response {
    if !valid_version(version) {
        return bad_version(version, correlation);
    }
    if let Err(refusal) = lock(&shared.tokens).check(headers, Instant::now()) {
        lock(&shared.books).unauthorized += 1;
        return auth::unauthorized(&refusal, correlation);
    }
    let code = if status == 405 {
        "MethodNotAllowed"
    } else {
        "BadRequest"
    };
    wire::graph_error(status, code, message, correlation)
}

/// How an upgrade call that passed the throttle will be answered.
enum Outcome {
    Upgraded,
    Refused {
        behaviour: Behaviour,
        retry_after: Option<String>,
    },
    Dropped,
}

async fn upgrade(
    shared: &Shared,
    correlation: &Correlation,
    path: UpgradePath,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    record(shared, &path, correlation);

    // The version is checked at Graph's front door, before anything else looks at the call.
    if !valid_version(&path.version) {
        return bad_version(&path.version, correlation);
    }
    let token = lock(&shared.tokens).check(headers, Instant::now());
    let token = match shared.config.reject_tokens {
        true => token.and(Err(Refusal::Invalid)),
        false => token,
    };
    if let Err(refusal) = token {
        lock(&shared.books).unauthorized += 1;
        return auth::unauthorized(&refusal, correlation);
    }
    let verdict = lock(&shared.throttle).check(Instant::now(), SystemTime::now());
    if let Verdict::Throttled {
        retry_after,
        in_window,
    } = verdict
    {
        return too_many_requests(shared, retry_after, in_window, correlation);
    }

    let outcome = decide(shared, &path, headers, body);
    shared.sleep_latency().await;
    answer(shared, outcome, correlation)
}

fn record(shared: &Shared, path: &UpgradePath, correlation: &Correlation) {
    let mut books = lock(&shared.books);
    books.upgrade_calls += 1;
    let key = (path.user.clone(), path.installation.clone());
    *books.calls.entry(key).or_insert(0) += 1;
    match &correlation.sent {
        Some(id) => books.client_request_ids.push(id.clone()),
        None => books.missing_client_request_id += 1,
    }
}

fn too_many_requests(
    shared: &Shared,
    retry_after: Option<String>,
    in_window: bool,
    correlation: &Correlation,
) -> Response {
    {
        let mut books = lock(&shared.books);
        books.throttled += 1;
        books.calls_in_window += u64::from(in_window);
    }
    let message = "Too many requests. Please try again later.";
    let mut response = wire::graph_error(429, "TooManyRequests", message, correlation);
    set_retry_after(&mut response, retry_after);
    response
}

/// Checks the request, then rolls for faults, then looks the user up in the fleet.
fn decide(shared: &Shared, path: &UpgradePath, headers: &HeaderMap, body: &[u8]) -> Outcome {
    let refused = |behaviour| Outcome::Refused {
        behaviour,
        retry_after: None,
    };
    if let Some(problem) = &path.problem {
        return refused(Behaviour::bad_request(problem));
    }
    if let Err(behaviour) = check_body(headers, body) {
        return refused(behaviour);
    }
    if let Some(fault) = roll_fault(shared) {
        return fault;
    }
    let config = &shared.config;
    match config.fleet.get(&path.user).or(config.everyone.as_ref()) {
        Some(behaviour) => refused(behaviour.clone()),
        None => Outcome::Upgraded,
    }
}

/// The body is optional, but when `Content-Type: application/json` is sent a body must be
/// too, and a body must be a JSON object with only `consentedPermissionSet` in it.
fn check_body(headers: &HeaderMap, body: &[u8]) -> Result<(), Behaviour> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let is_json = content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if body.is_empty() {
        if is_json {
            return Err(Behaviour::bad_request(
                "Empty Payload. JSON content expected.",
            ));
        }
        return Ok(());
    }
    if !is_json {
        let message = format!("Content type '{content_type}' is not supported.");
        return Err(Behaviour::new(415, "UnsupportedMediaType", &message));
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| Behaviour::bad_request("Invalid JSON. The request body is not valid JSON."))?;
    let Some(object) = value.as_object() else {
        return Err(Behaviour::bad_request(
            "Invalid request body: a JSON object was expected.",
        ));
    };
    match object.keys().find(|k| *k != "consentedPermissionSet") {
        Some(unknown) => Err(Behaviour::bad_request(&format!(
            "The property '{unknown}' does not exist on type \
             'microsoft.graph.teamsAppInstallation'. Make sure to only use property names that \
             are defined by the type or mark the type as open type."
        ))),
        None => Ok(()),
    }
}

/// One roll decides between a 503, a 504, a dropped connection and nothing.
fn roll_fault(shared: &Shared) -> Option<Outcome> {
    let config = &shared.config;
    let roll = fastrand::f64();
    let outcome = if roll < config.fault_503 {
        let retry_after = if fastrand::bool() {
            lock(&shared.throttle).retry_after_for_503(SystemTime::now())
        } else {
            None
        };
        let behaviour = Behaviour::new(
            503,
            "ServiceUnavailable",
            "The service is temporarily unavailable. Please try again later.",
        );
        Outcome::Refused {
            behaviour,
            retry_after,
        }
    } else if roll < config.fault_503 + config.fault_504 {
        Outcome::Refused {
            behaviour: Behaviour::for_status(504),
            retry_after: None,
        }
    } else if roll < config.fault_503 + config.fault_504 + config.fault_drop {
        Outcome::Dropped
    } else {
        return None;
    };
    lock(&shared.books).faults += 1;
    tracing::debug!(kind = fault_name(&outcome), "simulator injected a fault");
    Some(outcome)
}

fn fault_name(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Refused { behaviour, .. } if behaviour.status == 503 => "503",
        Outcome::Refused { .. } => "504",
        _ => "drop",
    }
}

fn answer(shared: &Shared, outcome: Outcome, correlation: &Correlation) -> Response {
    match outcome {
        Outcome::Upgraded => {
            lock(&shared.books).upgraded += 1;
            StatusCode::NO_CONTENT.into_response()
        }
        Outcome::Refused {
            behaviour,
            retry_after,
        } => {
            let Behaviour {
                status,
                code,
                message,
            } = behaviour;
            let mut response = wire::graph_error(status, &code, &message, correlation);
            set_retry_after(&mut response, retry_after);
            response
        }
        // Unwinding ends this connection's task without the panic hook: the socket closes and
        // the client gets no response at all, while other connections are served as before.
        Outcome::Dropped => std::panic::resume_unwind(Box::new("simulated dropped connection")),
    }
}

fn set_retry_after(response: &mut Response, retry_after: Option<String>) {
    if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
        response.headers_mut().insert(RETRY_AFTER, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::server::tests::{
        client, graph_post, json_body, raw_upgrade_url, upgrade_url,
    };
    use crate::simulator::{Fleet, SimConfig, Simulator};
    use std::time::Duration;

    fn upgrade_path(user: &str, installation: &str) -> Route {
        Route::Upgrade(UpgradePath {
            version: "v1.0".into(),
            user: user.into(),
            installation: installation.into(),
            problem: None,
        })
    }

    #[test]
    fn each_segment_is_decoded_on_its_own() {
        let route = parse("/v1.0/users/a%2Fb%2B%3D/teamwork/installedApps/x%2By%2Fz%3D%3D/upgrade");
        assert_eq!(route, upgrade_path("a/b+=", "x+y/z=="));

        let guest = "guest_contoso.com%23EXT%23%40fabrikam.com";
        let route = parse(&format!(
            "/v1.0/users/{guest}/teamwork/installedApps/i+j/upgrade"
        ));
        assert_eq!(
            route,
            upgrade_path("guest_contoso.com#EXT#@fabrikam.com", "i+j")
        );
    }

    #[test]
    fn the_key_form_unescapes_doubled_quotes() {
        let route = parse("/v1.0/users('o''brien%40contoso.com')/teamwork/installedApps/i/upgrade");
        assert_eq!(route, upgrade_path("o'brien@contoso.com", "i"));
        let route = parse("/v1.0/users(%27%24admin%27)/teamwork/installedApps/i/upgrade");
        assert_eq!(route, upgrade_path("$admin", "i"));
    }

    #[test]
    fn malformed_paths_carry_a_problem_or_are_not_upgrades() {
        let Route::Upgrade(path) = parse("/v1.0/users/$admin/teamwork/installedApps/i/upgrade")
        else {
            panic!("a $ user is still an upgrade call, answered 400");
        };
        assert_eq!(
            (path.user.as_str(), path.problem.is_some()),
            ("$admin", true)
        );

        let Route::Upgrade(path) = parse("/v1.0/users('it's')/teamwork/installedApps/i/upgrade")
        else {
            panic!("a bad key is still an upgrade call, answered 400");
        };
        assert!(path.problem.is_some());

        let route = parse("/v1.0/users/a/teamwork/installedApps/i/upgrades");
        assert_eq!(
            route,
            Route::Other {
                version: "v1.0".into(),
                segment: "upgrades".into()
            }
        );
        assert_eq!(
            parse("/v1.0/users/%FF/teamwork/installedApps/i/upgrade"),
            Route::Undecodable
        );
    }

    async fn status_and_code(response: reqwest::Response) -> (u16, String) {
        let status = response.status().as_u16();
        let body = json_body(response).await;
        (
            status,
            body["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    }

    #[tokio::test]
    async fn decoded_ids_are_recorded_byte_for_byte() {
        let sim = Simulator::start(SimConfig::default()).await.unwrap();
        let token = sim.mint_token(Duration::from_secs(60));
        let cases = [
            ("a%2Fb%2B%3D", "a/b+="),
            (
                "guest_x.com%23EXT%23%40t.onmicrosoft.com",
                "guest_x.com#EXT#@t.onmicrosoft.com",
            ),
            ("users('%24dollar')", "$dollar"),
            ("users('o''hara')", "o'hara"),
            ("plus+stays", "plus+stays"),
        ];
        for (raw, _) in cases {
            let url = match raw.strip_prefix("users") {
                Some(key) => format!(
                    "{}/v1.0/users{key}/teamwork/installedApps/ins%2F%2B%3D/upgrade",
                    sim.url()
                ),
                None => raw_upgrade_url(&sim, "v1.0", raw, "ins%2F%2B%3D"),
            };
            assert_eq!(
                graph_post(&url, &token).await.status().as_u16(),
                204,
                "{url}"
            );
        }

        let books = sim.books();
        for (_, decoded) in cases {
            assert_eq!(
                books.calls_for(decoded, "ins/+="),
                1,
                "{decoded}: {:?}",
                books.calls
            );
        }
        assert_eq!((books.upgrade_calls, books.upgraded), (5, 5));
    }

    #[tokio::test]
    async fn graph_refuses_what_graph_refuses() {
        let sim = Simulator::start(SimConfig::default()).await.unwrap();
        let token = sim.mint_token(Duration::from_secs(60));

        let dollar = raw_upgrade_url(&sim, "v1.0", "$admin%40contoso.com", "i");
        assert_eq!(
            status_and_code(graph_post(&dollar, &token).await).await,
            (400, "BadRequest".into())
        );

        let version = raw_upgrade_url(&sim, "v2.0", "a", "i");
        assert_eq!(
            status_and_code(graph_post(&version, &token).await).await,
            (400, "BadRequest".into())
        );

        let beta = raw_upgrade_url(&sim, "beta", "a", "i");
        assert_eq!(graph_post(&beta, &token).await.status().as_u16(), 204);

        // A Content-Type that promises JSON with no body behind it.
        let url = upgrade_url(&sim, "a", "i");
        let response = client()
            .post(&url)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(status_and_code(response).await, (400, "BadRequest".into()));

        let rsc = r#"{"consentedPermissionSet":{"resourceSpecificPermissions":[]}}"#;
        let response = client()
            .post(&url)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(rsc)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 204);
    }

    #[tokio::test]
    async fn fleet_users_get_their_answer_whatever_their_case() {
        let mut fleet = Fleet::default();
        fleet.insert("Ghost@Contoso.com", Behaviour::not_found());
        fleet.insert("unlicensed@contoso.com", Behaviour::forbidden());
        let sim = Simulator::start(SimConfig {
            fleet,
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let token = sim.mint_token(Duration::from_secs(60));

        let ghost = graph_post(&upgrade_url(&sim, "ghost@contoso.COM", "i"), &token).await;
        assert_eq!(status_and_code(ghost).await, (404, "NotFound".into()));
        let unlicensed =
            graph_post(&upgrade_url(&sim, "unlicensed@contoso.com", "i"), &token).await;
        assert_eq!(status_and_code(unlicensed).await, (403, "Forbidden".into()));
        let fine = graph_post(&upgrade_url(&sim, "anyone@contoso.com", "i"), &token).await;
        assert_eq!(fine.status().as_u16(), 204);

        let books = sim.books();
        assert_eq!((books.upgrade_calls, books.upgraded), (3, 1));
    }

    #[tokio::test]
    async fn every_response_carries_ids_and_a_date() {
        let sim = Simulator::start(SimConfig::default()).await.unwrap();
        let token = sim.mint_token(Duration::from_secs(60));
        let url = upgrade_url(&sim, "ghost", "i");

        let sent = uuid::Uuid::new_v4().to_string();
        let response = client()
            .post(&url)
            .bearer_auth(&token)
            .header("client-request-id", &sent)
            .send()
            .await
            .unwrap();
        let headers = response.headers().clone();
        assert_eq!(headers["client-request-id"], sent.as_str());
        assert!(uuid::Uuid::parse_str(headers["request-id"].to_str().unwrap()).is_ok());
        assert!(httpdate::parse_http_date(headers["date"].to_str().unwrap()).is_ok());

        // Without one, Graph answers with its own request id in that place.
        let response = client().post(&url).send().await.unwrap();
        let request_id = response.headers()["request-id"].clone();
        assert_eq!(response.headers()["client-request-id"], request_id);
        assert_eq!(response.headers()["content-type"], "application/json");
        let body = json_body(response).await;
        assert_eq!(
            body["error"]["innerError"]["request-id"],
            request_id.to_str().unwrap()
        );
        assert!(body["error"]["innerError"]["date"]
            .as_str()
            .unwrap()
            .contains('T'));

        let books = sim.books();
        assert_eq!(
            (
                books.client_request_ids.clone(),
                books.missing_client_request_id
            ),
            (vec![sent], 1)
        );
    }

    #[tokio::test]
    async fn a_dropped_connection_gives_no_response_and_the_server_goes_on() {
        let config = SimConfig {
            fault_drop: 1.0,
            ..SimConfig::default()
        };
        let sim = Simulator::start(config).await.unwrap();
        let token = sim.mint_token(Duration::from_secs(60));

        let error = client()
            .post(upgrade_url(&sim, "a", "i"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap_err();
        assert!(error.status().is_none(), "{error:?}");
        assert!(
            error.is_request() || error.is_connect() || error.is_body(),
            "{error:?}"
        );

        // A second drop on a fresh connection, then other routes still answer.
        assert!(client()
            .post(upgrade_url(&sim, "b", "i"))
            .bearer_auth(&token)
            .send()
            .await
            .is_err());
        let books: crate::simulator::Books = serde_json::from_value(
            json_body(
                client()
                    .get(format!("{}/_sim/books", sim.url()))
                    .send()
                    .await
                    .unwrap(),
            )
            .await,
        )
        .unwrap();
        assert_eq!(
            (books.upgrade_calls, books.faults, books.upgraded),
            (2, 2, 0)
        );
    }

    #[tokio::test]
    async fn faults_are_503s_and_504s_with_graph_codes() {
        let config = SimConfig {
            fault_503: 1.0,
            ..SimConfig::default()
        };
        let sim = Simulator::start(config).await.unwrap();
        let token = sim.mint_token(Duration::from_secs(60));
        for _ in 0..8 {
            let response = graph_post(&upgrade_url(&sim, "a", "i"), &token).await;
            if let Some(value) = response.headers().get("retry-after") {
                assert_eq!(value, "1");
            }
            assert_eq!(
                status_and_code(response).await,
                (503, "ServiceUnavailable".into())
            );
        }

        let config = SimConfig {
            fault_504: 1.0,
            ..SimConfig::default()
        };
        let sim = Simulator::start(config).await.unwrap();
        let token = sim.mint_token(Duration::from_secs(60));
        let response = graph_post(&upgrade_url(&sim, "a", "i"), &token).await;
        assert_eq!(
            status_and_code(response).await,
            (504, "GatewayTimeout".into())
        );
        assert_eq!(sim.books().faults, 1);
    }
}
