//! Tokens: the simulated Entra ID token endpoint (client credentials) and the bearer check
//! on Graph routes. Tokens and secrets never reach a log line, at any level.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::header::{
    HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::{Extension, Form};
use serde::Serialize;

use super::server::{lock, Shared};
use super::wire::{self, Correlation};

/// Tokens the server has issued, with the moment each stops being accepted.
#[derive(Default)]
pub(crate) struct TokenStore {
    // Expired tokens are kept so a late caller hears "expired" rather than "invalid".
    expiries: HashMap<String, Instant>,
}

/// Why a Graph call's bearer token was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    Empty,
    Expired,
    Invalid,
}

impl Refusal {
    fn message(&self) -> &'static str {
        match self {
            Refusal::Empty => "Access token is empty.",
            Refusal::Expired => "Access token has expired or is not yet valid.",
            Refusal::Invalid => "Access token validation failure.",
        }
    }
}

impl TokenStore {
    /// A fresh opaque token, accepted until `now + lifetime`.
    pub(crate) fn mint(&mut self, now: Instant, lifetime: Duration) -> String {
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        self.expiries.insert(token.clone(), now + lifetime);
        token
    }

    /// Checks the `Authorization` header of a Graph call.
    pub(crate) fn check(&self, headers: &HeaderMap, now: Instant) -> Result<(), Refusal> {
        let value = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => "",
        };
        if token.is_empty() {
            return Err(Refusal::Empty);
        }
        match self.expiries.get(token) {
            Some(expiry) if now < *expiry => Ok(()),
            Some(_) => Err(Refusal::Expired),
            None => Err(Refusal::Invalid),
        }
    }
}

/// Graph's 401, with the challenge header Graph sends alongside it.
pub(crate) fn unauthorized(refusal: &Refusal, correlation: &Correlation) -> Response {
    let mut response = wire::graph_error(
        401,
        "InvalidAuthenticationToken",
        refusal.message(),
        correlation,
    );
    let challenge = concat!(
        "Bearer realm=\"\", ",
        "authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", ",
        "client_id=\"00000003-0000-0000-c000-000000000000\""
    );
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    response
}

/// `POST /{tenant}/oauth2/v2.0/token` with a client-credentials form.
pub(crate) async fn token_endpoint(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    Extension(correlation): Extension<Correlation>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    shared.sleep_latency().await;
    let form = form.map(|Form(f)| f).unwrap_or_default();
    match grant(&shared, &tenant, &form) {
        Ok(()) => issue(&shared),
        Err(e) => aad_error(&shared, e, &correlation),
    }
}

/// The token endpoint's answer, fields in Entra ID's order.
#[derive(Serialize)]
struct TokenBody {
    token_type: &'static str,
    expires_in: u64,
    ext_expires_in: u64,
    access_token: String,
}

/// Entra ID's error body.
#[derive(Serialize)]
struct AadErrorBody<'a> {
    error: &'a str,
    error_description: String,
    error_codes: [u32; 1],
    timestamp: &'a str,
    trace_id: &'a str,
    correlation_id: &'a str,
    error_uri: String,
}

/// An Entra ID refusal: status, `error`, AADSTS number and description.
struct AadError {
    status: StatusCode,
    error: &'static str,
    code: u32,
    text: String,
}

impl AadError {
    fn bad_request(error: &'static str, code: u32, text: impl Into<String>) -> Self {
        let text = text.into();
        AadError {
            status: StatusCode::BAD_REQUEST,
            error,
            code,
            text,
        }
    }

    fn invalid_client(code: u32, text: impl Into<String>) -> Self {
        let text = text.into();
        AadError {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            code,
            text,
        }
    }

    fn missing(name: &str) -> Self {
        let text = format!("The request body must contain the following parameter: '{name}'.");
        AadError::bad_request("invalid_request", 900144, text)
    }
}

const NO_SCOPE: &str = "The required field 'scope' is missing from the credential. \
    Ensure that you have all the necessary parameters for the login request.";
const NO_SECRET: &str =
    "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.";
const UNKNOWN_CERTIFICATE: &str = "The certificate with identifier used to sign the client \
    assertion is not registered on application.";

/// Checks a client-credentials form the way Entra ID does, first complaint first.
fn grant(shared: &Shared, tenant: &str, form: &HashMap<String, String>) -> Result<(), AadError> {
    let field = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());

    let grant_type = field("grant_type").ok_or_else(|| AadError::missing("grant_type"))?;
    if grant_type != "client_credentials" {
        let text = format!("The app requested an unsupported grant type '{grant_type}'.");
        return Err(AadError::bad_request("unsupported_grant_type", 70003, text));
    }
    let client_id = field("client_id").ok_or_else(|| AadError::missing("client_id"))?;
    let scope =
        field("scope").ok_or_else(|| AadError::bad_request("invalid_request", 90014, NO_SCOPE))?;
    if !scope.ends_with("/.default") {
        let text = format!(
            "The provided value for scope {scope} is not valid. Client credential flows must have \
             a scope value with /.default suffixed to the resource identifier (application ID URI)."
        );
        return Err(AadError::bad_request("invalid_scope", 1002012, text));
    }
    if client_id != shared.config.client_id {
        let text = format!(
            "Application with identifier '{client_id}' was not found in the directory '{tenant}'. \
             This can happen if the application has not been installed by the administrator of \
             the tenant or consented to by any user in the tenant. You may have sent your \
             authentication request to the wrong tenant."
        );
        return Err(AadError::bad_request("unauthorized_client", 700016, text));
    }
    check_secret(
        shared,
        field("client_secret"),
        field("client_assertion").is_some(),
    )
}

fn check_secret(shared: &Shared, secret: Option<&str>, assertion: bool) -> Result<(), AadError> {
    match secret {
        Some(secret) if secret == shared.config.client_secret => Ok(()),
        Some(_) => {
            let text = format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is \
                 the client secret value, not the client secret ID, for a secret added to app \
                 '{}'.",
                shared.config.client_id
            );
            Err(AadError::invalid_client(7000215, text))
        }
        // The simulator knows secrets only: any certificate is one it never registered.
        None if assertion => Err(AadError::invalid_client(700027, UNKNOWN_CERTIFICATE)),
        None => Err(AadError::invalid_client(7000218, NO_SECRET)),
    }
}

fn issue(shared: &Shared) -> Response {
    let lifetime = shared.config.token_lifetime;
    let token = lock(&shared.tokens).mint(Instant::now(), lifetime);
    lock(&shared.books).tokens_issued += 1;
    tracing::debug!(lifetime = ?lifetime, "simulator issued a token");

    // Whole seconds, rounded down so a client that trusts expires_in is never refused early.
    let expires_in = lifetime.as_secs().max(1);
    let body = TokenBody {
        token_type: "Bearer",
        expires_in,
        ext_expires_in: expires_in,
        access_token: token,
    };
    aad_json(StatusCode::OK, &body)
}

fn aad_error(shared: &Shared, error: AadError, correlation: &Correlation) -> Response {
    let AadError {
        status,
        error: name,
        code,
        text,
    } = error;
    let timestamp = format!("{}Z", wire::iso_date(SystemTime::now()).replace('T', " "));
    let trace_id = &correlation.request_id;
    let correlation_id = correlation.client_request_id();
    let description = format!(
        "AADSTS{code}: {text}\r\nTrace ID: {trace_id}\r\n\
         Correlation ID: {correlation_id}\r\nTimestamp: {timestamp}"
    );
    let body = AadErrorBody {
        error: name,
        error_description: description,
        error_codes: [code],
        timestamp: &timestamp,
        trace_id,
        correlation_id,
        error_uri: format!("{}/error?code={code}", shared.root),
    };
    aad_json(status, &body)
}

fn aad_json(status: StatusCode, body: &impl Serialize) -> Response {
    let mut response = wire::json(status, body, SystemTime::now());
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::server::tests::{client, graph_post, upgrade_url};
    use crate::simulator::{SimConfig, Simulator};

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        headers
    }

    #[test]
    fn the_store_tells_empty_invalid_and_expired_apart() {
        let mut store = TokenStore::default();
        let now = Instant::now();
        let token = store.mint(now, Duration::from_secs(60));

        assert_eq!(store.check(&bearer(&token), now), Ok(()));
        assert_eq!(store.check(&HeaderMap::new(), now), Err(Refusal::Empty));
        assert_eq!(store.check(&bearer(""), now), Err(Refusal::Empty));
        assert_eq!(store.check(&bearer("forged"), now), Err(Refusal::Invalid));
        let later = now + Duration::from_secs(60);
        assert_eq!(store.check(&bearer(&token), later), Err(Refusal::Expired));
    }

    async fn ask_token(sim: &Simulator, form: &[(&str, &str)]) -> (u16, serde_json::Value) {
        let url = format!("{}/contoso.onmicrosoft.com/oauth2/v2.0/token", sim.url());
        let response = client().post(url).form(form).send().await.unwrap();
        let status = response.status().as_u16();
        (
            status,
            serde_json::from_str(&response.text().await.unwrap()).unwrap(),
        )
    }

    fn credentials<'a>(id: &'a str, secret: &'a str) -> [(&'a str, &'a str); 4] {
        [
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
            ("scope", "https://graph.microsoft.com/.default"),
        ]
    }

    #[tokio::test]
    async fn the_right_credentials_get_a_token_graph_accepts() {
        let sim = Simulator::start(SimConfig::default()).await.unwrap();
        let (status, body) = ask_token(&sim, &credentials("fleetup-sim", "sim-secret")).await;
        assert_eq!(status, 200);
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3599);
        assert_eq!(body["ext_expires_in"], 3599);

        let token = body["access_token"].as_str().unwrap();
        let response = graph_post(&upgrade_url(&sim, "a@x", "i"), token).await;
        assert_eq!(response.status().as_u16(), 204);
        assert_eq!(sim.books().tokens_issued, 1);
    }

    #[tokio::test]
    async fn wrong_credentials_get_entra_errors() {
        let sim = Simulator::start(SimConfig::default()).await.unwrap();

        let (status, body) = ask_token(&sim, &credentials("fleetup-sim", "wrong")).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client"))
        );
        let description = body["error_description"].as_str().unwrap();
        assert!(description.starts_with("AADSTS7000215: Invalid client secret provided"));

        let (status, body) = ask_token(&sim, &credentials("someone-else", "sim-secret")).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("unauthorized_client"))
        );

        let (status, body) = ask_token(&sim, &[("client_id", "fleetup-sim")]).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_request"))
        );

        let mut no_scope = credentials("fleetup-sim", "sim-secret").to_vec();
        no_scope.pop();
        let (status, body) = ask_token(&sim, &no_scope).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_request"))
        );

        assert_eq!(sim.books().tokens_issued, 0);
    }

    #[tokio::test]
    async fn an_issued_token_expires_after_its_lifetime() {
        let config = SimConfig {
            token_lifetime: Duration::from_secs(1),
            ..SimConfig::default()
        };
        let sim = Simulator::start(config).await.unwrap();
        let (_, body) = ask_token(&sim, &credentials("fleetup-sim", "sim-secret")).await;
        assert_eq!(body["expires_in"], 1);

        tokio::time::sleep(Duration::from_millis(1100)).await;
        let token = body["access_token"].as_str().unwrap();
        let response = graph_post(&upgrade_url(&sim, "a@x", "i"), token).await;
        assert_eq!(response.status().as_u16(), 401);
        let body: serde_json::Value =
            serde_json::from_str(&response.text().await.unwrap()).unwrap();
        assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
        assert_eq!(
            body["error"]["message"],
            "Access token has expired or is not yet valid."
        );
    }

    #[tokio::test]
    async fn graph_refuses_missing_forged_and_expired_tokens() {
        let sim = Simulator::start(SimConfig::default()).await.unwrap();
        let url = upgrade_url(&sim, "a@x", "i");

        let response = client().post(&url).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401);
        assert!(response.headers().contains_key(WWW_AUTHENTICATE));
        assert!(response
            .text()
            .await
            .unwrap()
            .contains("Access token is empty."));

        assert_eq!(graph_post(&url, "forged").await.status().as_u16(), 401);
        let expired = sim.mint_token(Duration::ZERO);
        assert_eq!(graph_post(&url, &expired).await.status().as_u16(), 401);

        let books = sim.books();
        assert_eq!(
            (books.unauthorized, books.upgrade_calls, books.upgraded),
            (3, 3, 0)
        );
    }
}
