//! The Graph routes: which path and method reach which handler, and the order every call is
//! answered in: books, version, auth, throttle, request checks, faults, fleet, work, latency.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::{Map, Value};

use super::auth::{self, Refusal};
use super::fleet::Behaviour;
use super::path::{parse, AppsPath, Route, Target};
use super::server::{lock, Shared};
use super::tenant::Lookup;
use super::throttle::{RequestClass, Verdict};
use super::wire::{self, Correlation};
use super::{catalog, installed};

/// What Graph requires to manage another app's installations for a user.
pub(crate) const WRITE_PERMISSIONS: &str = "TeamsAppInstallation.ReadWriteForUser.All, \
    TeamsAppInstallation.ReadWriteAndConsentForUser.All";
/// What Graph requires to read another app's installations for a user.
pub(crate) const READ_PERMISSIONS: &str =
    "TeamsAppInstallation.ReadForUser.All, TeamsAppInstallation.ReadWriteForUser.All";

/// One Graph call: what every handler needs to answer it.
pub(crate) struct Call<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) correlation: &'a Correlation,
    pub(crate) headers: &'a HeaderMap,
}

/// What Graph's front door looks at: the version in the path, the request class whose budget
/// the call spends, and the user it is about (none for the catalog).
pub(crate) struct Gate<'a> {
    pub(crate) version: &'a str,
    pub(crate) class: RequestClass,
    pub(crate) user: Option<&'a str>,
}

impl<'a> Gate<'a> {
    /// A call on one user's installed apps, counted in `class`.
    pub(crate) fn apps(path: &'a AppsPath, class: RequestClass) -> Gate<'a> {
        Gate {
            version: &path.version,
            class,
            user: Some(&path.user),
        }
    }
}

/// How a call that passed the front door will be answered.
pub(crate) enum Outcome {
    Answered(Response),
    Refused {
        behaviour: Behaviour,
        retry_after: Option<String>,
    },
    Dropped,
}

impl Outcome {
    fn refused(behaviour: Behaviour) -> Outcome {
        Outcome::Refused {
            behaviour,
            retry_after: None,
        }
    }
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
    let call = Call {
        shared: &shared,
        correlation: &correlation,
        headers: &headers,
    };
    // The raw path: axum has decoded nothing yet, so `%2F` is still inside its segment.
    match parse(uri.path()) {
        Route::Apps(path) => apps(&call, &path, &method, &uri, &body).await,
        Route::Catalog { version } if method == Method::GET => {
            catalog::list(&call, &version, uri.path(), uri.query()).await
        }
        Route::Catalog { version } => not_allowed(&call, &version, &method),
        Route::Other { version, segment } => {
            let message = format!("Resource not found for the segment '{segment}'.");
            refuse_other(&call, &version, 400, &message)
        }
        Route::Undecodable => wire::graph_error(
            400,
            "BadRequest",
            "The request URI is not valid.",
            &correlation,
        ),
    }
}

async fn apps(
    call: &Call<'_>,
    path: &AppsPath,
    method: &Method,
    uri: &Uri,
    body: &[u8],
) -> Response {
    let (get, post) = (*method == Method::GET, *method == Method::POST);
    match &path.target {
        Target::Upgrade(id) if post => upgrade(call, path, id, body).await,
        Target::One(id) if get => installed::get_one(call, path, id, uri.query()).await,
        Target::Collection if get => installed::list(call, path, uri.path(), uri.query()).await,
        Target::Collection if post => installed::install(call, path, body).await,
        _ => not_allowed(call, &path.version, method),
    }
}

/// Answers a call in Graph's order once its handler has kept its books: the front door
/// (version, token, throttle), then the route's request checks, injected faults, the fleet's
/// per-user answers, the route's own work, and the configured latency.
pub(crate) async fn serve<T>(
    call: &Call<'_>,
    gate: Gate<'_>,
    check: impl FnOnce() -> Result<T, Behaviour>,
    work: impl FnOnce(T) -> Result<Response, Behaviour>,
) -> Response {
    if let Some(refusal) = admit(call, &gate) {
        return refusal;
    }
    let outcome = decide(call, &gate, check, work);
    call.shared.sleep_latency().await;
    answer(outcome, call.correlation)
}

/// Graph's front door: the version first, then the token, then the class's throttle.
/// Returns the answer that turns the call away, if one does.
fn admit(call: &Call<'_>, gate: &Gate<'_>) -> Option<Response> {
    let (shared, correlation) = (call.shared, call.correlation);
    if !valid_version(gate.version) {
        return Some(bad_version(gate.version, correlation));
    }
    let token = lock(&shared.tokens).check(call.headers, Instant::now());
    let token = match shared.config.reject_tokens {
        true => token.and(Err(Refusal::Invalid)),
        false => token,
    };
    if let Err(refusal) = token {
        lock(&shared.books).unauthorized += 1;
        return Some(auth::unauthorized(&refusal, correlation));
    }
    let verdict = lock(&shared.throttle).check(gate.class, Instant::now(), SystemTime::now());
    match verdict {
        Verdict::Pass => None,
        Verdict::Throttled {
            retry_after,
            in_window,
        } => Some(too_many_requests(
            shared,
            gate.class,
            retry_after,
            in_window,
            correlation,
        )),
    }
}

fn decide<T>(
    call: &Call<'_>,
    gate: &Gate<'_>,
    check: impl FnOnce() -> Result<T, Behaviour>,
    work: impl FnOnce(T) -> Result<Response, Behaviour>,
) -> Outcome {
    let checked = match check() {
        Ok(checked) => checked,
        Err(behaviour) => return Outcome::refused(behaviour),
    };
    if let Some(fault) = roll_fault(call.shared, gate.class) {
        return fault;
    }
    let config = &call.shared.config;
    let listed = gate.user.and_then(|user| config.fleet.get(user));
    if let Some(behaviour) = listed.or(config.everyone.as_ref()) {
        return Outcome::refused(behaviour.clone());
    }
    match work(checked) {
        Ok(response) => Outcome::Answered(response),
        Err(behaviour) => Outcome::refused(behaviour),
    }
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

fn not_allowed(call: &Call<'_>, version: &str, method: &Method) -> Response {
    let message = format!("The HTTP method '{method}' is not allowed for this resource.");
    refuse_other(call, version, 405, &message)
}

/// A Graph call the simulator does not serve: still versioned and authenticated like Graph.
fn refuse_other(call: &Call<'_>, version: &str, status: u16, message: &str) -> Response {
    let (shared, correlation) = (call.shared, call.correlation);
    if !valid_version(version) {
        return bad_version(version, correlation);
    }
    if let Err(refusal) = lock(&shared.tokens).check(call.headers, Instant::now()) {
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

/// The 400 for a path Graph would not accept as written.
pub(crate) fn refuse_problem(path: &AppsPath) -> Result<(), Behaviour> {
    match &path.problem {
        Some(problem) => Err(Behaviour::bad_request(problem)),
        None => Ok(()),
    }
}

/// Graph's 403 for an app granted only the "Self" variant of a permission: it may manage its
/// own installations, not another app's.
pub(crate) fn missing_permission(needed: &str) -> Behaviour {
    let message = format!(
        "Missing role permissions on the request. API requires one of '{needed}'. \
         Roles on the request 'TeamsAppInstallation.ReadWriteSelfForUser.All'."
    );
    Behaviour::new(403, "Forbidden", &message)
}

/// The 404 for an installation id the user does not have, whoever else might.
pub(crate) fn installation_not_found() -> Behaviour {
    Behaviour::new(
        404,
        "NotFound",
        "The requested app installation was not found for this user.",
    )
}

async fn upgrade(call: &Call<'_>, path: &AppsPath, installation: &str, body: &[u8]) -> Response {
    record_upgrade(call, &path.user, installation);
    let gate = Gate::apps(path, RequestClass::InstalledAppsWrite);
    let check = || {
        refuse_problem(path)?;
        check_upgrade_body(call.headers, body)
    };
    let work = |()| upgrade_in_tenant(call.shared, &path.user, installation);
    serve(call, gate, check, work).await
}

fn record_upgrade(call: &Call<'_>, user: &str, installation: &str) {
    let mut books = lock(&call.shared.books);
    books.upgrade_calls += 1;
    let key = (user.to_string(), installation.to_string());
    *books.calls.entry(key).or_insert(0) += 1;
    match &call.correlation.sent {
        Some(id) => books.client_request_ids.push(id.clone()),
        None => books.missing_client_request_id += 1,
    }
}

/// An installation the tenant knows moves to its app's newest published version; one it
/// does not know is answered 204 all the same, so a tenant left empty upgrades anything.
fn upgrade_in_tenant(
    shared: &Shared,
    user: &str,
    installation: &str,
) -> Result<Response, Behaviour> {
    if shared.config.self_permissions_only {
        return Err(missing_permission(WRITE_PERMISSIONS));
    }
    let foreign = matches!(
        lock(&shared.tenant).upgrade(user, installation),
        Lookup::Foreign
    );
    if foreign {
        return Err(installation_not_found());
    }
    lock(&shared.books).upgraded += 1;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn too_many_requests(
    shared: &Shared,
    class: RequestClass,
    retry_after: Option<String>,
    in_window: bool,
    correlation: &Correlation,
) -> Response {
    {
        let mut books = lock(&shared.books);
        books.throttled += 1;
        *books
            .throttled_by_class
            .entry(class.name().to_string())
            .or_insert(0) += 1;
        books.calls_in_window += u64::from(in_window);
    }
    let message = "Too many requests. Please try again later.";
    let mut response = wire::graph_error(429, "TooManyRequests", message, correlation);
    set_retry_after(&mut response, retry_after);
    response
}

/// The upgrade's body is optional; when sent, it may hold only `consentedPermissionSet`.
fn check_upgrade_body(headers: &HeaderMap, body: &[u8]) -> Result<(), Behaviour> {
    match json_object(headers, body)? {
        Some(object) => only_properties(&object, &["consentedPermissionSet"]),
        None => Ok(()),
    }
}

/// The JSON object a request body holds, if it has one. `Content-Type: application/json`
/// must come with a body, and a body with it.
pub(crate) fn json_object(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Option<Map<String, Value>>, Behaviour> {
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
        return Ok(None);
    }
    if !is_json {
        let message = format!("Content type '{content_type}' is not supported.");
        return Err(Behaviour::new(415, "UnsupportedMediaType", &message));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| Behaviour::bad_request("Invalid JSON. The request body is not valid JSON."))?;
    match value {
        Value::Object(object) => Ok(Some(object)),
        _ => Err(Behaviour::bad_request(
            "Invalid request body: a JSON object was expected.",
        )),
    }
}

/// Refuses the first property the installation type does not define.
pub(crate) fn only_properties(
    object: &Map<String, Value>,
    allowed: &[&str],
) -> Result<(), Behaviour> {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(unknown) => Err(Behaviour::bad_request(&format!(
            "The property '{unknown}' does not exist on type \
             'microsoft.graph.teamsAppInstallation'. Make sure to only use property names that \
             are defined by the type or mark the type as open type."
        ))),
        None => Ok(()),
    }
}

/// One roll decides between a 503, a 504, a dropped connection and nothing.
fn roll_fault(shared: &Shared, class: RequestClass) -> Option<Outcome> {
    let config = &shared.config;
    let roll = fastrand::f64();
    let outcome = if roll < config.fault_503 {
        let retry_after = if fastrand::bool() {
            lock(&shared.throttle).retry_after_for_503(class, SystemTime::now())
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
        Outcome::refused(Behaviour::for_status(504))
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

fn answer(outcome: Outcome, correlation: &Correlation) -> Response {
    match outcome {
        Outcome::Answered(response) => response,
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
        client, graph_post, json_body, raw_upgrade_url, status_and_code, upgrade_url,
    };
    use crate::simulator::{Fleet, SimConfig, Simulator};
    use std::time::Duration;

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
