//! Access tokens: a bearer token given by the admin, or the client-credentials
//! flow; cached, refreshed before expiry, and refreshed once after a 401.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::retry::{parse_retry_after, Backoff};

/// How often the token endpoint is tried before the run gives up on it.
const TOKEN_ATTEMPTS: u32 = 5;

/// A secret string whose `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(value: impl Into<Arc<str>>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where tokens come from.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// A token from the `GRAPH_TOKEN` environment variable: it cannot be
    /// refreshed.
    EnvToken(Secret),
    /// A token file, read again after a 401 in case the admin's tooling has
    /// replaced it.
    TokenFile(PathBuf),
    /// The OAuth client-credentials flow.
    ClientSecret {
        /// Authority root, e.g. `https://login.microsoftonline.com`.
        authority: String,
        tenant: String,
        client_id: String,
        secret: Secret,
        /// `{graph root}/.default`
        scope: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read the token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the token file {path} is empty; write a bearer token into it")]
    EmptyTokenFile { path: PathBuf },
    #[error(
        "the token endpoint {url} refused the credentials ({status}): {error}: {description}. \
         Check --tenant, --client-id and FLEETUP_CLIENT_SECRET."
    )]
    Refused {
        url: String,
        status: u16,
        error: String,
        description: String,
    },
    #[error("the token endpoint {url} could not be used after {attempts} attempts: {reason}")]
    Unavailable {
        url: String,
        attempts: u32,
        reason: String,
    },
}

/// A token handed to a caller, with the generation it belongs to so that a
/// 401 refreshes it only once however many workers saw it fail.
#[derive(Clone, Debug)]
pub struct Token {
    pub value: Secret,
    generation: u64,
}

struct Cached {
    token: Token,
    /// When to fetch a new one; `None` for tokens with no known lifetime.
    refresh_at: Option<Instant>,
}

/// The run's token cache.
pub struct TokenSource {
    credentials: Credentials,
    http: reqwest::Client,
    cached: Mutex<Option<Cached>>,
}

impl TokenSource {
    pub fn new(credentials: Credentials, http: reqwest::Client) -> TokenSource {
        TokenSource {
            credentials,
            http,
            cached: Mutex::new(None),
        }
    }

    /// Whether a 401 can be answered with a new token.
    pub fn can_refresh(&self) -> bool {
        !matches!(self.credentials, Credentials::EnvToken(_))
    }

    /// A token that is not about to expire.
    pub async fn token(&self) -> Result<Token, AuthError> {
        let mut cached = self.cached.lock().await;
        if let Some(current) = cached.as_ref() {
            let fresh = current.refresh_at.is_none_or(|at| Instant::now() < at);
            if fresh {
                return Ok(current.token.clone());
            }
        }
        let generation = cached.as_ref().map_or(1, |c| c.token.generation + 1);
        let next = self.fetch(generation).await?;
        let token = next.token.clone();
        *cached = Some(next);
        Ok(token)
    }

    /// Graph answered 401 to `rejected`: the next [`TokenSource::token`]
    /// fetches a new one, unless another worker already did.
    pub async fn invalidate(&self, rejected: &Token) {
        let mut cached = self.cached.lock().await;
        if let Some(current) = cached.as_mut() {
            if current.token.generation == rejected.generation {
                tracing::info!("Graph rejected the access token (401); fetching a new one");
                current.refresh_at = Some(Instant::now());
            }
        }
    }

    async fn fetch(&self, generation: u64) -> Result<Cached, AuthError> {
        let fixed = |value: Secret| Cached {
            token: Token { value, generation },
            refresh_at: None,
        };
        match &self.credentials {
            Credentials::EnvToken(value) => Ok(fixed(value.clone())),
            Credentials::TokenFile(path) => {
                let bytes = std::fs::read(path).map_err(|source| AuthError::TokenFile {
                    path: path.clone(),
                    source,
                })?;
                let text = token_text(&bytes).map_err(|source| AuthError::TokenFile {
                    path: path.clone(),
                    source,
                })?;
                let text = bare_token(&text);
                if text.is_empty() {
                    return Err(AuthError::EmptyTokenFile { path: path.clone() });
                }
                Ok(fixed(Secret::new(text)))
            }
            Credentials::ClientSecret { .. } => self.client_credentials(generation).await,
        }
    }

    /// The file the token is read from, if it is.
    pub fn token_file(&self) -> Option<&std::path::Path> {
        match &self.credentials {
            Credentials::TokenFile(path) => Some(path),
            _ => None,
        }
    }

    async fn client_credentials(&self, generation: u64) -> Result<Cached, AuthError> {
        let Credentials::ClientSecret {
            authority,
            tenant,
            client_id,
            secret,
            scope,
        } = &self.credentials
        else {
            unreachable!("client_credentials is only called for a client secret");
        };
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            authority.trim_end_matches('/'),
            percent_encoding::utf8_percent_encode(tenant, percent_encoding::NON_ALPHANUMERIC)
        );
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            ("client_secret", secret.expose()),
            ("scope", scope.as_str()),
        ];

        let backoff = Backoff::default();
        let mut last_reason = String::new();
        for attempt in 1..=TOKEN_ATTEMPTS {
            let sent_at = Instant::now();
            let answer = self.http.post(&url).form(&form).send().await;
            let wait =
                match answer {
                    Ok(response) if response.status().is_success() => {
                        let body: TokenAnswer = response.json_body().await.map_err(|reason| {
                            AuthError::Unavailable {
                                url: url.clone(),
                                attempts: attempt,
                                reason,
                            }
                        })?;
                        return Ok(body.into_cached(generation, sent_at));
                    }
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let retry_after = retry_after_of(&response);
                        if status != 429 && status < 500 {
                            let body: AadError = response.json_body().await.unwrap_or_default();
                            return Err(AuthError::Refused {
                                url,
                                status,
                                error: body.error,
                                description: body.error_description,
                            });
                        }
                        last_reason = format!("HTTP {status}");
                        retry_after
                    }
                    Err(err) => {
                        last_reason = err.to_string();
                        None
                    }
                };
            if attempt < TOKEN_ATTEMPTS {
                let wait = wait.unwrap_or_else(|| backoff.delay(attempt, fastrand::f64()));
                tracing::warn!(
                    "token endpoint unavailable ({last_reason}); retrying in {:.1}s",
                    wait.as_secs_f64()
                );
                tokio::time::sleep(wait).await;
            }
        }
        Err(AuthError::Unavailable {
            url,
            attempts: TOKEN_ATTEMPTS,
            reason: last_reason,
        })
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<u64>,
}

impl TokenAnswer {
    fn into_cached(self, generation: u64, sent_at: Instant) -> Cached {
        let refresh_at = self.expires_in.map(|secs| sent_at + refresh_after(secs));
        Cached {
            token: Token {
                value: Secret::new(self.access_token),
                generation,
            },
            refresh_at,
        }
    }
}

/// The text of a token file as Windows tools save it too: UTF-8 with or
/// without a byte-order mark, or UTF-16 with one (PowerShell 5's `>`).
fn token_text(bytes: &[u8]) -> std::io::Result<String> {
    let (decoded, _, malformed) = match bytes {
        [0xFF, 0xFE, ..] => encoding_rs::UTF_16LE.decode(bytes),
        [0xFE, 0xFF, ..] => encoding_rs::UTF_16BE.decode(bytes),
        _ => encoding_rs::UTF_8.decode(bytes),
    };
    if malformed {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "it is not text (save it as UTF-8 or UTF-16 text holding only the token)",
        ));
    }
    Ok(decoded.into_owned())
}

/// A token as pasted, without the `Bearer ` an admin may have copied along.
pub fn bare_token(token: &str) -> &str {
    let token = token.trim().trim_start_matches('\u{feff}').trim();
    match token.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("bearer ") => token[7..].trim(),
        _ => token,
    }
}

/// How long after fetching a token with `expires_in` seconds of life to
/// fetch the next: a tenth of its life early, at most five minutes early.
pub fn refresh_after(expires_in: u64) -> Duration {
    let life = Duration::from_secs(expires_in);
    let margin = (life / 10).min(Duration::from_secs(300));
    life - margin
}

#[derive(Deserialize, Default)]
struct AadError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

fn retry_after_of(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?;
    parse_retry_after(value.to_str().ok()?, SystemTime::now())
}

/// Reads a JSON body without reqwest's `json` feature.
trait JsonBody {
    async fn json_body<T: serde::de::DeserializeOwned>(self) -> Result<T, String>;
}

impl JsonBody for reqwest::Response {
    async fn json_body<T: serde::de::DeserializeOwned>(self) -> Result<T, String> {
        let bytes = self.bytes().await.map_err(|err| err.to_string())?;
        serde_json::from_slice(&bytes).map_err(|err| format!("unreadable answer: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_token_file_loses_a_pasted_bearer_prefix_and_its_line_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.txt");
        std::fs::write(&path, "Bearer eyJ0.abc\r\n").unwrap();
        let source = TokenSource::new(Credentials::TokenFile(path.clone()), reqwest::Client::new());
        assert_eq!(source.token().await.unwrap().value.expose(), "eyJ0.abc");

        // As PowerShell 5 writes it: UTF-8 with a byte-order mark, or UTF-16.
        std::fs::write(&path, "\u{feff}Bearer eyJ0.bom\r\n").unwrap();
        let source = TokenSource::new(Credentials::TokenFile(path.clone()), reqwest::Client::new());
        assert_eq!(source.token().await.unwrap().value.expose(), "eyJ0.bom");
        let utf16: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain("eyJ0.wide\r\n".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        std::fs::write(&path, utf16).unwrap();
        let source = TokenSource::new(Credentials::TokenFile(path), reqwest::Client::new());
        assert_eq!(source.token().await.unwrap().value.expose(), "eyJ0.wide");
        assert_eq!(bare_token("  bearer  x "), "x");
        assert_eq!(bare_token("Bearerx"), "Bearerx");
    }

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("eyJ0eXAiOiJKV1Qi.very.secret");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(format!("{secret}"), "***");
        let credentials = Credentials::EnvToken(secret);
        assert!(!format!("{credentials:?}").contains("very.secret"));
    }

    #[test]
    fn tokens_are_refreshed_early_by_a_tenth_of_their_life_at_most_five_minutes() {
        assert_eq!(refresh_after(3599), Duration::from_secs(3299));
        assert_eq!(refresh_after(600), Duration::from_secs(540));
        assert_eq!(refresh_after(10), Duration::from_secs(9));
    }
}
