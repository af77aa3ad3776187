//! The simulator's HTTP server: state shared by the handlers, the router, and the
//! `Simulator` handle that starts it on loopback and stops it.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::auth::{self, TokenStore};
use super::tenant::{Lookup, Tenant};
use super::throttle::{RequestClass, Throttles};
use super::{graph, wire, Books, SimConfig};

/// Everything the handlers share. Each lock is held for a few instructions, never across
/// an await.
pub(crate) struct Shared {
    pub(crate) config: SimConfig,
    /// `http://127.0.0.1:PORT`.
    pub(crate) root: String,
    pub(crate) books: Mutex<Books>,
    pub(crate) throttle: Mutex<Throttles>,
    pub(crate) tokens: Mutex<TokenStore>,
    /// The directory as upgrades and installs have changed it; `config.tenant` is the start.
    pub(crate) tenant: Mutex<Tenant>,
}

impl Shared {
    /// Waits a uniform random time in the configured latency range.
    pub(crate) async fn sleep_latency(&self) {
        let (min, max) = self.config.latency;
        if max.is_zero() {
            return;
        }
        let wait = min + (max - min).mul_f64(fastrand::f64());
        tokio::time::sleep(wait).await;
    }
}

/// Locks a mutex even if a handler panicked while holding it; the books stay readable.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running simulator. Dropping it stops the server too; `shutdown` waits for that.
pub struct Simulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Simulator {
    /// Starts on a free loopback port, on the current tokio runtime.
    pub async fn start(config: SimConfig) -> io::Result<Simulator> {
        Simulator::start_on(0, config).await
    }

    /// Starts on `127.0.0.1:port` (0 picks a free port), on the current tokio runtime.
    pub async fn start_on(port: u16, config: SimConfig) -> io::Result<Simulator> {
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
        let addr = listener.local_addr()?;

        let shared = Arc::new(Shared {
            throttle: Mutex::new(Throttles::new(&config, Instant::now())),
            tenant: Mutex::new(config.tenant.clone()),
            config,
            root: format!("http://{addr}"),
            books: Mutex::new(Books::default()),
            tokens: Mutex::new(TokenStore::default()),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let app = router(shared.clone());
        let task = tokio::spawn(async move {
            let serving = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serving.await {
                tracing::debug!(error = %e, "simulator server stopped with an error");
            }
        });
        tracing::debug!(%addr, "simulator listening");
        Ok(Simulator {
            addr,
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`: both the Graph root and the authority root.
    pub fn url(&self) -> String {
        self.shared.root.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A token the server accepts until `lifetime` has passed. Not counted in `tokens_issued`.
    pub fn mint_token(&self, lifetime: Duration) -> String {
        lock(&self.shared.tokens).mint(Instant::now(), lifetime)
    }

    /// A snapshot of the books.
    pub fn books(&self) -> Books {
        lock(&self.shared.books).clone()
    }

    /// Moves the write class's throttle line (upgrades and installs) while running; `None`
    /// stops throttling it.
    ///
    /// # Panics
    ///
    /// If the rate is not a positive finite number.
    pub fn set_rate(&self, rate: Option<f64>) {
        self.set_class_rate(RequestClass::InstalledAppsWrite, rate);
    }

    /// Moves one request class's throttle line while running; `None` stops throttling it.
    /// The two read classes are separate: moving one leaves the other where it was.
    ///
    /// # Panics
    ///
    /// If the rate is not a positive finite number.
    pub fn set_class_rate(&self, class: RequestClass, rate: Option<f64>) {
        if let Some(r) = rate {
            assert!(
                r.is_finite() && r > 0.0,
                "simulator rate must be above 0, not {r}"
            );
        }
        lock(&self.shared.throttle).set_rate(class, rate, Instant::now());
    }

    /// The version a user's installation is at now, if the tenant holds that installation
    /// for that user (user in any case, installation id exactly).
    pub fn installed_version(&self, user: &str, installation: &str) -> Option<String> {
        match lock(&self.shared.tenant).lookup(user, installation) {
            Lookup::Mine(found) => Some(found.version.clone()),
            Lookup::Foreign | Lookup::Unknown => None,
        }
    }

    /// A snapshot of the tenant directory as upgrades and installs have left it.
    pub fn tenant(&self) -> Tenant {
        lock(&self.shared.tenant).clone()
    }

    /// Stops accepting, lets requests in flight finish (for at most two seconds), and returns.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/_sim/books", get(books))
        .route("/{tenant}/oauth2/v2.0/token", post(auth::token_endpoint))
        .fallback(graph::route)
        .layer(middleware::from_fn(wire::stamp))
        .with_state(shared)
}

async fn books(State(shared): State<Arc<Shared>>) -> Response {
    Json(lock(&shared.books).clone()).into_response()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    use std::sync::OnceLock;

    /// Everything but the unreserved characters is encoded, as a careful client would.
    const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');

    /// One client for all tests: building one loads the system's certificates, slow enough
    /// to let a bucket refill between two calls. It keeps no idle connections, because each
    /// test has its own runtime and a connection must not outlive the runtime that opened it.
    pub(crate) fn client() -> reqwest::Client {
        static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
        let build = || {
            let builder = reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(0);
            builder.build().unwrap()
        };
        CLIENT.get_or_init(build).clone()
    }

    /// The upgrade URL with both ids percent-encoded.
    pub(crate) fn upgrade_url(sim: &Simulator, user: &str, installation: &str) -> String {
        let user = utf8_percent_encode(user, SEGMENT).to_string();
        let installation = utf8_percent_encode(installation, SEGMENT).to_string();
        raw_upgrade_url(sim, "v1.0", &user, &installation)
    }

    /// The upgrade URL with the segments exactly as given.
    pub(crate) fn raw_upgrade_url(
        sim: &Simulator,
        version: &str,
        user: &str,
        installation: &str,
    ) -> String {
        format!(
            "{}/{version}/users/{user}/teamwork/installedApps/{installation}/upgrade",
            sim.url()
        )
    }

    /// A user's installedApps URL, user percent-encoded, `tail` (`/{id}` or `?…`) as given.
    pub(crate) fn apps_url(sim: &Simulator, user: &str, tail: &str) -> String {
        let user = utf8_percent_encode(user, SEGMENT).to_string();
        format!(
            "{}/v1.0/users/{user}/teamwork/installedApps{tail}",
            sim.url()
        )
    }

    /// One installation's URL, both ids percent-encoded.
    pub(crate) fn installation_url(sim: &Simulator, user: &str, installation: &str) -> String {
        let installation = utf8_percent_encode(installation, SEGMENT).to_string();
        apps_url(sim, user, &format!("/{installation}"))
    }

    /// One GET with a bearer token and a fresh client-request-id.
    pub(crate) async fn graph_get(url: &str, token: &str) -> reqwest::Response {
        client()
            .get(url)
            .bearer_auth(token)
            .header("client-request-id", uuid::Uuid::new_v4().to_string())
            .send()
            .await
            .unwrap()
    }

    /// One upgrade attempt, with a bearer token and a fresh client-request-id.
    pub(crate) async fn graph_post(url: &str, token: &str) -> reqwest::Response {
        client()
            .post(url)
            .bearer_auth(token)
            .header("client-request-id", uuid::Uuid::new_v4().to_string())
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn json_body(response: reqwest::Response) -> serde_json::Value {
        serde_json::from_str(&response.text().await.unwrap()).unwrap()
    }

    /// The status and the Graph error code of a response (empty when it has none).
    pub(crate) async fn status_and_code(response: reqwest::Response) -> (u16, String) {
        let status = response.status().as_u16();
        let body = json_body(response).await;
        let code = body["error"]["code"].as_str().unwrap_or_default();
        (status, code.to_string())
    }

    #[tokio::test]
    async fn the_books_route_serves_the_books_as_json() {
        let sim = Simulator::start(SimConfig::default()).await.unwrap();
        let token = sim.mint_token(Duration::from_secs(60));
        graph_post(&upgrade_url(&sim, "a@x", "i/1"), &token).await;

        let body = json_body(
            client()
                .get(format!("{}/_sim/books", sim.url()))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(body["upgrade_calls"], 1);
        assert_eq!(body["calls"][0]["installation"], "i/1");
        assert_eq!(
            Simulator::start(SimConfig::default())
                .await
                .unwrap()
                .books(),
            Books::default()
        );
    }

    #[tokio::test]
    async fn shutdown_stops_the_server() {
        let sim = Simulator::start(SimConfig::default()).await.unwrap();
        let url = format!("{}/_sim/books", sim.url());
        assert!(client().get(&url).send().await.is_ok());
        sim.shutdown().await;
        assert!(client().get(&url).send().await.is_err());
    }

    #[tokio::test]
    async fn a_bad_config_is_refused_at_start() {
        let config = SimConfig {
            burst: 0,
            rate: Some(1.0),
            ..SimConfig::default()
        };
        let error = Simulator::start(config).await.err().unwrap();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
}
