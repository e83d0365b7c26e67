//! The client fresco-api and fresco-agent use to talk to fresco-scheduler (feature
//! `scheduler-client`).
//!
//! - The API asks for placements ([`SchedulerClient::place`]) and ends leases
//!   ([`SchedulerClient::release`], [`SchedulerClient::release_in_background`]) with a
//!   control-plane token signed by its control-plane key.
//! - An agent may report with [`SchedulerClient::heartbeat`], each heartbeat signed with the
//!   agent's own key for its exact body; heartbeats go to every configured scheduler so that
//!   standbys stay warm.
//!
//! Several schedulers may be configured (`[scheduler] urls`): one is active, the others answer
//! 503 with the header `x-fresco-scheduler-role: standby`. The client remembers which one
//! answered last and fails over to the next one when the remembered one is unreachable or
//! standing by. A scheduler that did not answer (refused the connection, or accepted it and
//! said nothing within the request timeout: a paused process, a hung host) is tried last for
//! `SUSPECT_FOR`, so that calls reach the new active scheduler first once a standby took over
//! instead of waiting out a timeout each. Connections are pooled and kept alive, and
//! control-plane tokens are cached, so a placement costs one loopback round trip.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use uuid::Uuid;

use crate::ticket::{AgentSigner, ControlPlaneSigner, TicketError};
use crate::tls::InternalTls;
use crate::wire::{
    GrantAnswer, GrantRequest, GrantReturn, Heartbeat, Placement, PlacementRequest, Release,
};

/// Header a scheduler sets on every answer: `active` or `standby`.
pub const ROLE_HEADER: &str = "x-fresco-scheduler-role";

/// Seconds a token the client signs stays valid; it is re-signed well before that.
const TOKEN_TTL_S: i64 = 300;
/// Age after which a cached token is replaced.
const TOKEN_REFRESH: Duration = Duration::from_secs(240);
/// How long a scheduler that did not answer is tried after the others.
const SUSPECT_FOR: Duration = Duration::from_secs(10);

/// Why a call to the schedulers failed.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The project is at its concurrency limit or over its per-minute rate (HTTP 429).
    #[error("{message} (retry after {}s)", retry_after.as_secs())]
    RateLimited {
        retry_after: Duration,
        message: String,
    },
    /// No agent has room for the execution (HTTP 503 from the active scheduler).
    #[error("no capacity: {0}")]
    NoCapacity(String),
    /// No scheduler could be reached, or all of them stand by.
    #[error("no scheduler available: {0}")]
    Unavailable(String),
    /// The scheduler refused the caller's token (HTTP 401 or 403).
    #[error("scheduler refused the credentials: {0}")]
    Unauthorized(String),
    /// Any other answer.
    #[error("scheduler answered {status}: {message}")]
    Unexpected { status: u16, message: String },
    /// The client could not sign its own token.
    #[error("cannot sign a scheduler token: {0}")]
    Token(#[from] TicketError),
    /// The client was built without any URL, or with an invalid one.
    #[error("invalid scheduler client configuration: {0}")]
    Config(String),
}

/// Who the client speaks for.
#[derive(Clone)]
pub enum Credentials {
    /// A control-plane service (e.g. `fresco-api`), which may ask for placements.
    ControlPlane { signer: Arc<ControlPlaneSigner> },
    /// An agent, which may only send heartbeats.
    Agent { signer: Arc<AgentSigner> },
}

/// Timeouts and TLS of the client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Time to establish a connection to one scheduler before trying the next.
    pub connect_timeout: Duration,
    /// Time for one whole request to one scheduler.
    pub request_timeout: Duration,
    /// `[internal_tls]`: the CA schedulers are verified with.
    pub tls: InternalTls,
}

impl Default for ClientOptions {
    fn default() -> Self {
        // A placement takes about a millisecond: a scheduler silent for seconds is not
        // going to answer (paused or hung), and the caller is waiting.
        Self {
            connect_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_secs(2),
            tls: InternalTls::disabled(),
        }
    }
}

/// A client of the schedulers; cheap to clone (clones share the connection pool).
#[derive(Clone)]
pub struct SchedulerClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// Base URLs without a trailing slash.
    urls: Vec<String>,
    /// Index into `urls` of the scheduler that answered last.
    active: AtomicUsize,
    /// Per URL: until when it is tried last (it did not answer).
    suspect: Mutex<Vec<Option<Instant>>>,
    credentials: Credentials,
    token: Mutex<Option<(HeaderValue, Instant)>>,
}

impl SchedulerClient {
    /// A client for `urls` (tried in order, starting with the last one that answered).
    pub fn new(
        urls: &[String],
        credentials: Credentials,
        options: ClientOptions,
    ) -> Result<Self, SchedulerError> {
        let urls: Vec<String> = urls
            .iter()
            .map(|u| u.trim().trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        if urls.is_empty() {
            return Err(SchedulerError::Config("no scheduler urls".into()));
        }
        if let Some(bad) = urls
            .iter()
            .find(|u| !(u.starts_with("http://") || u.starts_with("https://")))
        {
            return Err(SchedulerError::Config(format!(
                "scheduler url {bad:?} is not http(s)"
            )));
        }
        if options.tls.requires_tls() {
            if let Some(bad) = urls.iter().find(|u| !u.starts_with("https://")) {
                return Err(SchedulerError::Config(format!(
                    "scheduler url {bad:?} is not https, but [internal_tls] ca_file is set"
                )));
            }
        }
        let http = options
            .tls
            .client_builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| SchedulerError::Config(format!("cannot build http client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                suspect: Mutex::new(vec![None; urls.len()]),
                urls,
                active: AtomicUsize::new(0),
                credentials,
                token: Mutex::new(None),
            }),
        })
    }

    /// A client for a control-plane service (the signer names it, e.g. `fresco-api`).
    pub fn for_control_plane(
        urls: &[String],
        signer: Arc<ControlPlaneSigner>,
        tls: InternalTls,
    ) -> Result<Self, SchedulerError> {
        Self::new(
            urls,
            Credentials::ControlPlane { signer },
            ClientOptions {
                tls,
                ..ClientOptions::default()
            },
        )
    }

    /// A client for an agent's heartbeats.
    pub fn for_agent(
        urls: &[String],
        signer: Arc<AgentSigner>,
        tls: InternalTls,
    ) -> Result<Self, SchedulerError> {
        Self::new(
            urls,
            Credentials::Agent { signer },
            ClientOptions {
                tls,
                ..ClientOptions::default()
            },
        )
    }

    /// The URL of the scheduler that answered last (or the first one configured).
    pub fn active_url(&self) -> &str {
        let i = self.inner.active.load(Ordering::Relaxed);
        &self.inner.urls[i % self.inner.urls.len()]
    }

    /// Asks the active scheduler for a placement: an agent, a lease and a ticket for it.
    pub async fn place(&self, request: &PlacementRequest) -> Result<Placement, SchedulerError> {
        let body = serde_json::to_vec(request)
            .map_err(|e| SchedulerError::Config(format!("cannot encode placement: {e}")))?;
        let response = self.post_active("/v1/placements", body).await?;
        match response.status() {
            StatusCode::OK => {
                response
                    .json::<Placement>()
                    .await
                    .map_err(|e| SchedulerError::Unexpected {
                        status: 200,
                        message: format!("invalid placement body: {e}"),
                    })
            }
            _ => Err(error_from(response).await),
        }
    }

    /// Ends a lease on the active scheduler. An unknown lease (already expired or released)
    /// counts as released.
    pub async fn release(&self, lease_id: Uuid, release: &Release) -> Result<(), SchedulerError> {
        let body = serde_json::to_vec(release)
            .map_err(|e| SchedulerError::Config(format!("cannot encode release: {e}")))?;
        let response = self
            .post_active(&format!("/v1/placements/{lease_id}/release"), body)
            .await?;
        match response.status() {
            StatusCode::NO_CONTENT | StatusCode::OK | StatusCode::NOT_FOUND => Ok(()),
            _ => Err(error_from(response).await),
        }
    }

    /// Asks the active scheduler for a grant: slots on one agent for one function.
    pub async fn grant(&self, request: &GrantRequest) -> Result<GrantAnswer, SchedulerError> {
        let body = serde_json::to_vec(request)
            .map_err(|e| SchedulerError::Config(format!("cannot encode grant request: {e}")))?;
        let response = self.post_active("/v1/grants", body).await?;
        match response.status() {
            StatusCode::OK => {
                response
                    .json::<GrantAnswer>()
                    .await
                    .map_err(|e| SchedulerError::Unexpected {
                        status: 200,
                        message: format!("invalid grant body: {e}"),
                    })
            }
            _ => Err(error_from(response).await),
        }
    }

    /// Gives a grant back to the active scheduler. An unknown grant (expired, or returned)
    /// counts as returned.
    pub async fn return_grant(
        &self,
        grant_id: Uuid,
        returned: &GrantReturn,
    ) -> Result<(), SchedulerError> {
        let body = serde_json::to_vec(returned)
            .map_err(|e| SchedulerError::Config(format!("cannot encode grant return: {e}")))?;
        let response = self
            .post_active(&format!("/v1/grants/{grant_id}/return"), body)
            .await?;
        match response.status() {
            StatusCode::NO_CONTENT | StatusCode::OK | StatusCode::NOT_FOUND => Ok(()),
            _ => Err(error_from(response).await),
        }
    }

    /// Gives a grant back without waiting (see [`SchedulerClient::release_in_background`]);
    /// a failure is logged and the grant then expires on its own.
    pub fn return_grant_in_background(&self, grant_id: Uuid, returned: GrantReturn) {
        let client = self.clone();
        tokio::spawn(async move {
            if let Err(e) = client.return_grant(grant_id, &returned).await {
                log::warn!("cannot return grant {grant_id}: {e}");
            }
        });
    }

    /// Tells the active scheduler that `agent_id` could not be reached (connection refused or
    /// reset): it places nothing there until the agent's next heartbeat. Call it before asking
    /// for another placement, or the same agent may be chosen again.
    pub async fn report_unreachable(&self, agent_id: &str) -> Result<(), SchedulerError> {
        let response = self
            .post_active(
                &format!("/v1/agents/{}/unreachable", encode_segment(agent_id)),
                Vec::new(),
            )
            .await?;
        match response.status() {
            StatusCode::NO_CONTENT | StatusCode::OK => Ok(()),
            _ => Err(error_from(response).await),
        }
    }

    /// Ends a lease without waiting: spawns the call on the current tokio runtime and logs a
    /// failure (the lease then expires on its own). Must be called inside a tokio runtime.
    pub fn release_in_background(&self, lease_id: Uuid, release: Release) {
        let client = self.clone();
        tokio::spawn(async move {
            if let Err(e) = client.release(lease_id, &release).await {
                log::warn!("cannot release lease {lease_id}: {e}");
            }
        });
    }

    /// Sends an agent's heartbeat to every scheduler, so standbys know the agents when they
    /// take over. Succeeds when at least one scheduler accepted it.
    pub async fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<(), SchedulerError> {
        let body = bytes_of(heartbeat)?;
        let auth = match &self.inner.credentials {
            Credentials::Agent { signer } => bearer(&signer.heartbeat_token(&body, TOKEN_TTL_S)?)?,
            Credentials::ControlPlane { .. } => {
                return Err(SchedulerError::Config(
                    "only an agent sends heartbeats".into(),
                ))
            }
        };
        let sends = self.inner.urls.iter().map(|url| {
            let request = self
                .inner
                .http
                .post(format!("{url}/v1/agents/heartbeat"))
                .header(AUTHORIZATION, auth.clone())
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
            async move {
                match request.send().await {
                    // 200 carries retirements for real agents; this client only reports.
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(error_from(r).await),
                    Err(e) => Err(SchedulerError::Unavailable(format!(
                        "{url}: {}",
                        describe(e)
                    ))),
                }
            }
        });
        let results = futures_util::future::join_all(sends).await;
        let mut first_error = None;
        let mut accepted = false;
        for (url, result) in self.inner.urls.iter().zip(results) {
            match result {
                Ok(()) => accepted = true,
                Err(e) => {
                    log::debug!("heartbeat to {url} failed: {e}");
                    first_error.get_or_insert(e);
                }
            }
        }
        match (accepted, first_error) {
            (true, _) | (false, None) => Ok(()),
            (false, Some(e)) => Err(e),
        }
    }

    /// POSTs `body` to the active scheduler, failing over to the next URL when one cannot be
    /// reached or stands by. Returns the first answer of a scheduler that is not a standby.
    async fn post_active(
        &self,
        path: &str,
        body: Vec<u8>,
    ) -> Result<reqwest::Response, SchedulerError> {
        let auth = self.authorization()?;
        let body = bytes::Bytes::from(body);
        let start = self.inner.active.load(Ordering::Relaxed);
        let mut reasons = Vec::new();
        for (step, index) in self.order(start).into_iter().enumerate() {
            let url = &self.inner.urls[index];
            let sent = self
                .inner
                .http
                .post(format!("{url}{path}"))
                .header(AUTHORIZATION, auth.clone())
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            match sent {
                Err(e) => {
                    self.set_suspect(index, true);
                    reasons.push(format!("{url}: {}", describe(e)));
                }
                Ok(response) if is_standby(&response) => {
                    self.set_suspect(index, false);
                    reasons.push(format!("{url}: standby"));
                }
                Ok(response) => {
                    self.set_suspect(index, false);
                    if step != 0 || index != start {
                        self.inner.active.store(index, Ordering::Relaxed);
                    }
                    return Ok(response);
                }
            }
        }
        Err(SchedulerError::Unavailable(reasons.join("; ")))
    }

    /// Every URL once, from `start` on, those that did not answer lately last.
    fn order(&self, start: usize) -> Vec<usize> {
        let n = self.inner.urls.len();
        let now = Instant::now();
        let suspect = self
            .inner
            .suspect
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let is_suspect = |i: usize| suspect.get(i).copied().flatten().is_some_and(|t| t > now);
        let ring = (0..n).map(|step| (start + step) % n);
        let (mut order, later): (Vec<usize>, Vec<usize>) = ring.partition(|&i| !is_suspect(i));
        order.extend(later);
        order
    }

    fn set_suspect(&self, index: usize, suspect: bool) {
        let mut all = self
            .inner
            .suspect
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(slot) = all.get_mut(index) {
            *slot = suspect.then(|| Instant::now() + SUSPECT_FOR);
        }
    }

    /// The `Authorization` header, from the cache while the token is fresh.
    fn authorization(&self) -> Result<HeaderValue, SchedulerError> {
        let mut cached = self
            .inner
            .token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((value, signed_at)) = cached.as_ref() {
            if signed_at.elapsed() < TOKEN_REFRESH {
                return Ok(value.clone());
            }
        }
        let token = match &self.inner.credentials {
            Credentials::ControlPlane { signer } => signer.token(TOKEN_TTL_S)?,
            Credentials::Agent { .. } => {
                return Err(SchedulerError::Config(
                    "an agent may only send heartbeats".into(),
                ))
            }
        };
        let value = bearer(&token)?;
        *cached = Some((value.clone(), Instant::now()));
        Ok(value)
    }
}

fn bearer(token: &str) -> Result<HeaderValue, SchedulerError> {
    HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|e| SchedulerError::Config(format!("token is not a header value: {e}")))
}

/// Percent-encodes one URL path segment.
fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A transport error with its causes, without repeating the URL.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn bytes_of<T: serde::Serialize>(value: &T) -> Result<bytes::Bytes, SchedulerError> {
    serde_json::to_vec(value)
        .map(bytes::Bytes::from)
        .map_err(|e| SchedulerError::Config(format!("cannot encode request: {e}")))
}

fn is_standby(response: &reqwest::Response) -> bool {
    response.status() == StatusCode::SERVICE_UNAVAILABLE
        && response
            .headers()
            .get(ROLE_HEADER)
            .is_some_and(|v| v.as_bytes() == b"standby")
}

/// Turns a non-success answer into an error, reading the OpenStack-style error body.
async fn error_from(response: reqwest::Response) -> SchedulerError {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::from_secs(1), Duration::from_secs);
    let text = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            v.get("error")
                .and_then(|e| e.get("message"))
                .and_then(|m| m.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| text.chars().take(200).collect());
    match status {
        StatusCode::TOO_MANY_REQUESTS => SchedulerError::RateLimited {
            retry_after,
            message,
        },
        StatusCode::SERVICE_UNAVAILABLE => SchedulerError::NoCapacity(message),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => SchedulerError::Unauthorized(message),
        _ => SchedulerError::Unexpected {
            status: status.as_u16(),
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticket::test_keys::*;
    use crate::ticket::{AgentVerifier, ControlPlaneVerifier};

    fn agent() -> Arc<AgentSigner> {
        Arc::new(AgentSigner::from_pem(AGENT_PRIVATE.as_bytes(), "agent-7").expect("signer"))
    }

    fn control_plane() -> Arc<ControlPlaneSigner> {
        Arc::new(
            ControlPlaneSigner::from_pem(CONTROL_PLANE_PRIVATE.as_bytes(), "fresco-api")
                .expect("signer"),
        )
    }

    #[test]
    fn urls_are_validated_and_normalised() {
        let plain = InternalTls::disabled;
        assert!(matches!(
            SchedulerClient::for_agent(&[], agent(), plain()),
            Err(SchedulerError::Config(_))
        ));
        assert!(matches!(
            SchedulerClient::for_agent(&["127.0.0.1:8901".into()], agent(), plain()),
            Err(SchedulerError::Config(_))
        ));
        let client = SchedulerClient::for_agent(
            &[
                " http://127.0.0.1:8901/ ".into(),
                "http://127.0.0.1:8911".into(),
            ],
            agent(),
            plain(),
        )
        .expect("client");
        assert_eq!(client.active_url(), "http://127.0.0.1:8901");
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode_segment("node-1.example_x~"), "node-1.example_x~");
        assert_eq!(encode_segment("a/b c%"), "a%2Fb%20c%25");
    }

    #[test]
    fn control_plane_tokens_are_cached_and_agents_get_none() {
        let client = SchedulerClient::for_control_plane(
            &["http://127.0.0.1:8901".into()],
            control_plane(),
            InternalTls::disabled(),
        )
        .expect("client");
        let first = client.authorization().expect("token");
        let second = client.authorization().expect("token");
        assert_eq!(first, second, "the token is cached");
        let text = first.to_str().expect("ascii");
        let token = text.strip_prefix("Bearer ").expect("bearer");
        let verifier =
            ControlPlaneVerifier::from_pem(CONTROL_PLANE_PUBLIC.as_bytes()).expect("verifier");
        assert_eq!(verifier.verify(token).expect("valid"), "fresco-api");
        // An agent's client signs heartbeats only, never a reusable bearer token.
        let agent_client = SchedulerClient::for_agent(
            &["http://127.0.0.1:8901".into()],
            agent(),
            InternalTls::disabled(),
        )
        .expect("client");
        assert!(agent_client.authorization().is_err());
        let key = AgentVerifier::from_pem(AGENT_PUBLIC.as_bytes()).expect("key");
        let token = agent().heartbeat_token(b"{}", 60).expect("sign");
        assert!(key.verify_heartbeat("agent-7", &token, b"{}").is_ok());
    }

    #[tokio::test]
    async fn schedulers_that_did_not_answer_are_tried_last() {
        let client = SchedulerClient::for_agent(
            &[
                "http://127.0.0.1:8901".into(),
                "http://127.0.0.1:8911".into(),
                "http://127.0.0.1:8921".into(),
            ],
            agent(),
            InternalTls::disabled(),
        )
        .expect("client");
        assert_eq!(client.order(0), [0, 1, 2]);
        assert_eq!(client.order(1), [1, 2, 0]);
        client.set_suspect(1, true);
        assert_eq!(client.order(0), [0, 2, 1]);
        assert_eq!(client.order(1), [2, 0, 1], "the remembered one too");
        client.set_suspect(1, false);
        assert_eq!(client.order(1), [1, 2, 0]);
    }

    #[tokio::test]
    async fn a_silent_scheduler_is_left_for_the_next_within_the_timeout() {
        // Accepts connections and never answers, like a scheduler under kill -STOP.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let silent_url = format!("http://{}", silent.local_addr().expect("addr"));
        let client = SchedulerClient::new(
            &[silent_url.clone(), "http://127.0.0.1:9".into()],
            Credentials::ControlPlane {
                signer: control_plane(),
            },
            ClientOptions {
                connect_timeout: Duration::from_millis(200),
                request_timeout: Duration::from_millis(300),
                tls: InternalTls::disabled(),
            },
        )
        .expect("client");
        let started = Instant::now();
        let err = client
            .release(Uuid::new_v4(), &Release { warm: true })
            .await
            .expect_err("nobody answers");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(matches!(err, SchedulerError::Unavailable(_)), "{err}");
        // Both are suspect now; the remembered one keeps its place among them.
        assert_eq!(client.order(0), [0, 1]);
        drop(silent);
    }

    #[tokio::test]
    async fn unreachable_schedulers_are_unavailable() {
        // Port 9 (discard) on loopback: nothing listens there in the test environment.
        let client = SchedulerClient::new(
            &["http://127.0.0.1:9".into(), "http://127.0.0.1:9/".into()],
            Credentials::ControlPlane {
                signer: control_plane(),
            },
            ClientOptions {
                connect_timeout: Duration::from_millis(200),
                request_timeout: Duration::from_millis(500),
                tls: InternalTls::disabled(),
            },
        )
        .expect("client");
        let err = client
            .release(Uuid::new_v4(), &Release { warm: true })
            .await
            .expect_err("nothing listens");
        match err {
            SchedulerError::Unavailable(reason) => {
                assert_eq!(reason.matches("127.0.0.1:9").count(), 2, "{reason}")
            }
            other => panic!("unexpected error {other}"),
        }
    }
}
