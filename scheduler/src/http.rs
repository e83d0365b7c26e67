//! The HTTP layer (actix-web), kept thin: authenticate, parse, call the domain, map its result
//! to a status and a small OpenStack-style JSON error body in one place.
//!
//! - `POST /v1/agents/heartbeat` (heartbeat token signed with the enrolled key of the agent the
//!   body names, for that body; the body's URL must be the enrolled one) → 200 `HeartbeatReply`
//!   (the warm containers to retire), or 204 while this scheduler has not read the retirement
//!   log yet
//! - `POST /v1/placements` (control-plane token) → 200 `Placement` | 429 | 503
//! - `POST /v1/placements/{lease_id}/release` (control-plane token) → 204
//! - `POST /v1/grants` (control-plane token) → 200 `GrantAnswer` | 429 | 503
//! - `POST /v1/grants/{grant_id}/return` (control-plane token, body `GrantReturn`) → 204
//! - `POST /v1/agents/{agent_id}/unreachable` (control-plane token) → 204: the caller could
//!   not reach the agent; it gets no placements until its next heartbeat
//! - `GET /healthcheck` → 200 `{"role": "active"|"standby", ...}`
//!
//! Every answer carries `x-fresco-scheduler-role`; a standby answers 503 to placements and
//! releases so that clients fail over to the active scheduler.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use fresco_common::enrolment::{normalize_url, AgentRegistry};
use fresco_common::ticket::{ControlPlaneVerifier, TicketSigner, LEEWAY_S};
use fresco_common::wire::{
    GrantAnswer, GrantRequest, GrantReturn, Heartbeat, HeartbeatReply, Placement, PlacementRequest,
    Release,
};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::dispatch::Dispatcher;
use crate::leader::Leadership;
use crate::placement::{Demand, PlaceError, Placer};
use crate::retirements::RetirementLog;
use fresco_store::queue::Store;

/// Header naming the answering scheduler's role (`fresco_common::scheduler_client` reads it).
pub const ROLE_HEADER: &str = "x-fresco-scheduler-role";

/// How long a verified control-plane token is trusted without checking its signature again.
const VERIFIED_TOKEN_TTL: Duration = Duration::from_secs(10);
/// Most control-plane tokens remembered as verified.
const VERIFIED_TOKEN_CACHE: usize = 64;
/// Largest request body accepted.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What the handlers share.
pub struct AppState {
    pub placer: Arc<Placer>,
    pub signer: Arc<TicketSigner>,
    /// Checks the API's control-plane tokens.
    pub control_plane: Arc<ControlPlaneVerifier>,
    /// The enrolled agents: their public keys and URLs.
    pub agents: Arc<AgentRegistry>,
    /// Whether this scheduler leads (placements are refused otherwise).
    pub leadership: Arc<Leadership>,
    /// Heartbeats to write to the `agents` table.
    pub persist: mpsc::Sender<Heartbeat>,
    pub dispatcher: Dispatcher,
    pub store: Store,
    pub verified: Mutex<HashMap<String, Instant>>,
    /// Warm containers to retire, handed to agents in heartbeat replies.
    pub retirements: Arc<Mutex<RetirementLog>>,
    pub grants: GrantSettings,
    /// Requests served since start, by kind (shown by `GET /healthcheck`).
    pub counters: Counters,
    /// Cron ticks fired while this scheduler led.
    pub cron: Arc<crate::cron::CronStats>,
    pub notifications: Arc<crate::notifications::NotificationStats>,
    /// `GET /metrics`.
    pub metrics: crate::metrics::Metrics,
}

/// How grants are given.
#[derive(Debug, Clone, Copy)]
pub struct GrantSettings {
    /// How long a grant's token lets its holder start invocations.
    pub ttl: Duration,
    pub max_slots: u32,
}

/// Requests served, by kind.
#[derive(Debug, Default)]
pub struct Counters {
    pub placements: AtomicU64,
    pub releases: AtomicU64,
    pub grants: AtomicU64,
    pub grant_returns: AtomicU64,
}

/// Registers the routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
        .route("/healthcheck", web::get().to(healthcheck))
        .route("/metrics", web::get().to(metrics))
        .route("/v1/agents/heartbeat", web::post().to(heartbeat))
        .route("/v1/placements", web::post().to(place))
        .route("/v1/placements/{lease_id}/release", web::post().to(release))
        .route("/v1/grants", web::post().to(grant))
        .route("/v1/grants/{grant_id}/return", web::post().to(return_grant))
        .route(
            "/v1/agents/{agent_id}/unreachable",
            web::post().to(unreachable),
        );
}

/// Why a request failed, mapped to a status in one place.
#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Standby(&'static str),
    #[error(transparent)]
    Place(#[from] PlaceError),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn response(&self, active: bool) -> HttpResponse {
        let status = match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Standby(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Place(PlaceError::NoCapacity { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Place(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut response = HttpResponse::build(status);
        response.insert_header((ROLE_HEADER, role(active)));
        if let ApiError::Place(e) = self {
            if let Some(seconds) = e.retry_after_s() {
                response.insert_header((header::RETRY_AFTER, seconds.to_string()));
            }
        }
        response.json(serde_json::json!({
            "error": {
                "code": status.as_u16(),
                "title": status.canonical_reason().unwrap_or("Error"),
                "message": self.to_string(),
            }
        }))
    }
}

fn role(active: bool) -> &'static str {
    if active {
        "active"
    } else {
        "standby"
    }
}

fn bearer(req: &HttpRequest) -> Result<&str, ApiError> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::Unauthorized("missing bearer token".into()))
}

/// The body of a control-plane call (a placement, a grant): refused by a standby, then the
/// caller's control-plane token checked, then the body parsed.
fn control_plane_call<T: serde::de::DeserializeOwned>(
    state: &AppState,
    req: &HttpRequest,
    body: &[u8],
    active: bool,
) -> Result<T, ApiError> {
    control_plane_check(state, req, active)?;
    parse(body)
}

/// Every control-plane call: refused by a standby, then the caller's control-plane token
/// checked.
fn control_plane_check(state: &AppState, req: &HttpRequest, active: bool) -> Result<(), ApiError> {
    if !active {
        return Err(ApiError::Standby("standby scheduler"));
    }
    state.check_control_plane(req)
}

/// 204 for a control-plane call that answers nothing, or the error's answer.
fn no_content(result: Result<(), ApiError>, active: bool) -> HttpResponse {
    match result {
        Ok(()) => HttpResponse::NoContent()
            .insert_header((ROLE_HEADER, role(active)))
            .finish(),
        Err(e) => e.response(active),
    }
}

/// An active scheduler's JSON answer, or the error's (whose role header says which we are).
fn active_answer<T: serde::Serialize>(result: Result<T, ApiError>, active: bool) -> HttpResponse {
    match result {
        Ok(body) => HttpResponse::Ok()
            .insert_header((ROLE_HEADER, HeaderValue::from_static("active")))
            .json(body),
        Err(e) => e.response(active),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("invalid body: {e}")))
}

impl AppState {
    pub(crate) fn is_active(&self) -> bool {
        self.leadership.is_active()
    }

    /// Checks a control-plane token, from the cache when it was verified moments ago.
    fn check_control_plane(&self, req: &HttpRequest) -> Result<(), ApiError> {
        let token = bearer(req)?;
        let now = Instant::now();
        {
            let cache = self
                .verified
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if cache
                .get(token)
                .is_some_and(|at| now.duration_since(*at) < VERIFIED_TOKEN_TTL)
            {
                return Ok(());
            }
        }
        self.control_plane
            .verify(token)
            .map_err(|e| ApiError::Unauthorized(format!("invalid control-plane token: {e}")))?;
        let mut cache = self
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= VERIFIED_TOKEN_CACHE {
            cache.retain(|_, at| now.duration_since(*at) < VERIFIED_TOKEN_TTL);
            if cache.len() >= VERIFIED_TOKEN_CACHE {
                cache.clear();
            }
        }
        cache.insert(token.to_owned(), now);
        Ok(())
    }
}

async fn healthcheck(state: web::Data<AppState>) -> HttpResponse {
    let active = state.is_active();
    let stats = state.dispatcher.stats();
    HttpResponse::Ok()
        .insert_header((ROLE_HEADER, role(active)))
        .json(serde_json::json!({
            "role": role(active),
            "epoch": if active { state.leadership.epoch() } else { None },
            "agents_up": state.placer.up_agents().len(),
            "leases": state.placer.lease_count(),
            "requests": {
                "placements": state.counters.placements.load(Ordering::Relaxed),
                "releases": state.counters.releases.load(Ordering::Relaxed),
                "grants": state.counters.grants.load(Ordering::Relaxed),
                "grant_returns": state.counters.grant_returns.load(Ordering::Relaxed),
            },
            "async": {
                "in_flight": state.dispatcher.in_flight(),
                "dispatched": stats.dispatched.load(Ordering::Relaxed),
                "completed": stats.completed.load(Ordering::Relaxed),
                "requeued": stats.requeued.load(Ordering::Relaxed),
                "failed": stats.failed.load(Ordering::Relaxed),
                "fenced": stats.fenced.load(Ordering::Relaxed),
            },
        }))
}

/// Prometheus metrics (text format). The queue's depth comes from the database; without it
/// the rest is still served.
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let store = state.store.clone();
    let queue = match tokio::task::spawn_blocking(move || store.queue_depth()).await {
        Ok(Ok(depth)) => Some(depth),
        Ok(Err(e)) => {
            log::warn!("metrics: cannot read the queue depth: {e}");
            None
        }
        Err(_) => None,
    };
    let text = state.metrics.render(&state, &state.cron, queue);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}

async fn heartbeat(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let active = state.is_active();
    match accept_heartbeat(&state, &req, &body) {
        Ok(Some(reply)) => HttpResponse::Ok()
            .insert_header((ROLE_HEADER, role(active)))
            .json(reply),
        Ok(None) => HttpResponse::NoContent()
            .insert_header((ROLE_HEADER, role(active)))
            .finish(),
        Err(e) => e.response(active),
    }
}

/// Accepts a heartbeat only from the agent it names: signed with that agent's enrolled key for
/// these very bytes, and reporting the URL the agent was enrolled at (a new URL needs a new
/// enrolment, or a stolen key could draw the agent's work elsewhere). The reply names the warm
/// containers the agent must retire.
fn accept_heartbeat(
    state: &AppState,
    req: &HttpRequest,
    body: &[u8],
) -> Result<Option<HeartbeatReply>, ApiError> {
    let token = bearer(req)?;
    let heartbeat: Heartbeat = parse(body)?;
    if heartbeat.agent_id.is_empty() || heartbeat.url.is_empty() {
        return Err(ApiError::BadRequest(
            "agent_id and url must not be empty".into(),
        ));
    }
    let enrolment = state.agents.get(&heartbeat.agent_id).map_err(|e| {
        log::warn!("heartbeat refused: {e}");
        ApiError::Unauthorized(format!("invalid agent token: {e}"))
    })?;
    enrolment
        .key
        .verify_heartbeat(&heartbeat.agent_id, token, body)
        .map_err(|e| {
            log::warn!("heartbeat for agent {} refused: {e}", heartbeat.agent_id);
            ApiError::Unauthorized(format!("invalid agent token: {e}"))
        })?;
    if normalize_url(&heartbeat.url) != enrolment.url {
        log::warn!(
            "agent {} reports url {:?}, enrolled at {:?}: refused",
            heartbeat.agent_id,
            heartbeat.url,
            enrolment.url
        );
        return Err(ApiError::Forbidden(format!(
            "agent {} is enrolled at {}, not {}: re-enrol it to move it",
            heartbeat.agent_id, enrolment.url, heartbeat.url
        )));
    }
    let reply = state
        .retirements
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .reply(heartbeat.retired_seq);
    let retiring = reply.as_ref().map_or(&[][..], |r| &r.retire[..]);
    let outcome = state
        .placer
        .heartbeat_retiring(&heartbeat, Instant::now(), retiring);
    if outcome.came_up {
        log::info!("agent {} is up at {}", heartbeat.agent_id, heartbeat.url);
    }
    if outcome.persist {
        if let Err(e) = state.persist.try_send(heartbeat) {
            log::warn!("heartbeat not persisted: {e}");
        }
    }
    Ok(reply)
}

async fn place(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let active = state.is_active();
    state.counters.placements.fetch_add(1, Ordering::Relaxed);
    active_answer(place_one(&state, &req, &body, active), active)
}

fn place_one(
    state: &AppState,
    req: &HttpRequest,
    body: &[u8],
    active: bool,
) -> Result<Placement, ApiError> {
    let request: PlacementRequest = control_plane_call(state, req, body, active)?;
    if request.payload_sha256.len() != 64
        || !request
            .payload_sha256
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
    {
        return Err(ApiError::BadRequest(
            "payload_sha256 must be 64 hex digits".into(),
        ));
    }
    let spec = request.spec;
    let demand = Demand {
        project_id: &spec.project_id,
        image: &spec.image,
        function_id: spec.function_id,
        version: spec.version,
        memory_mb: spec.memory_mb,
        timeout_s: spec.timeout_s,
        concurrent_limit: request.concurrent_limit,
        per_minute_limit: request.per_minute_limit,
    };
    let lease = state.placer.place(&demand, Instant::now())?;
    let ticket = state
        .signer
        .sign(
            &lease.agent_id,
            request.execution_id,
            lease.lease_id,
            &request.payload_sha256,
            spec,
        )
        .map_err(|e| {
            state.placer.release(lease.lease_id, false);
            ApiError::Internal(format!("cannot sign the ticket: {e}"))
        })?;
    Ok(Placement {
        lease_id: lease.lease_id,
        agent_id: lease.agent_id.to_string(),
        agent_url: lease.agent_url.to_string(),
        ticket,
        warm: lease.warm,
    })
}

async fn release(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let active = state.is_active();
    let result = (|| {
        control_plane_check(&state, &req, active)?;
        let lease_id = Uuid::parse_str(&path)
            .map_err(|_| ApiError::BadRequest(format!("invalid lease id {:?}", path.as_str())))?;
        let release: Release = parse(&body)?;
        state.counters.releases.fetch_add(1, Ordering::Relaxed);
        state.placer.release(lease_id, release.warm);
        Ok(())
    })();
    no_content(result, active)
}

async fn grant(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let active = state.is_active();
    state.counters.grants.fetch_add(1, Ordering::Relaxed);
    active_answer(give_grant(&state, &req, &body, active), active)
}

/// Grants slots on one agent. The grant counts against the project until it is returned, or
/// until its token can no longer start anything and whatever it started has timed out: the
/// token's lifetime, plus the verifiers' clock leeway, plus the function's timeout.
fn give_grant(
    state: &AppState,
    req: &HttpRequest,
    body: &[u8],
    active: bool,
) -> Result<GrantAnswer, ApiError> {
    let request: GrantRequest = control_plane_call(state, req, body, active)?;
    let spec = request.spec;
    let demand = Demand {
        project_id: &spec.project_id,
        image: &spec.image,
        function_id: spec.function_id,
        version: spec.version,
        memory_mb: spec.memory_mb,
        timeout_s: spec.timeout_s,
        concurrent_limit: request.concurrent_limit,
        per_minute_limit: request.per_minute_limit,
    };
    let settings = state.grants;
    let ttl_s = settings.ttl.as_millis().div_ceil(1000).max(1);
    let ttl_s = i64::try_from(ttl_s).unwrap_or(i64::MAX / 4);
    let hold = Duration::from_secs(
        u64::try_from(ttl_s).unwrap_or(u64::MAX / 4)
            + LEEWAY_S
            + 1
            + u64::try_from(spec.timeout_s).unwrap_or(0),
    );
    let granted = state.placer.grant(
        &demand,
        request.slots.min(settings.max_slots.max(1)),
        request.invocations,
        hold,
        Instant::now(),
    )?;
    let token = state
        .signer
        .sign_grant(
            &granted.agent_id,
            granted.grant_id,
            granted.slots,
            ttl_s,
            spec,
        )
        .map_err(|e| {
            state
                .placer
                .return_grant(granted.grant_id, Some(0), Instant::now());
            ApiError::Internal(format!("cannot sign the grant: {e}"))
        })?;
    Ok(GrantAnswer {
        grant_id: granted.grant_id,
        agent_id: granted.agent_id.to_string(),
        agent_url: granted.agent_url.to_string(),
        token,
        slots: granted.slots,
        invocations: granted.invocations,
        ttl_ms: u64::try_from(settings.ttl.as_millis()).unwrap_or(u64::MAX),
        warm: granted.warm,
    })
}

async fn return_grant(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let active = state.is_active();
    let result = (|| {
        control_plane_check(&state, &req, active)?;
        let grant_id = Uuid::parse_str(&path)
            .map_err(|_| ApiError::BadRequest(format!("invalid grant id {:?}", path.as_str())))?;
        let returned: GrantReturn = parse(&body)?;
        state.counters.grant_returns.fetch_add(1, Ordering::Relaxed);
        state
            .placer
            .return_grant(grant_id, returned.used, Instant::now());
        Ok(())
    })();
    no_content(result, active)
}

async fn unreachable(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let active = state.is_active();
    let result = control_plane_check(&state, &req, active).map(|()| state.placer.mark_down(&path));
    match result {
        Ok(was_up) => {
            if was_up {
                log::warn!(
                    "agent {} reported unreachable: down until its next heartbeat",
                    path.as_str()
                );
                if let Some(fence) = state.leadership.fence() {
                    let store = state.store.clone();
                    let ids = vec![path.into_inner()];
                    tokio::task::spawn_blocking(move || {
                        if let Err(e) = store.mark_agents_down(&fence, &ids) {
                            log::warn!("cannot mark agent {} down: {e}", ids[0]);
                        }
                    });
                }
            }
            HttpResponse::NoContent()
                .insert_header((ROLE_HEADER, role(active)))
                .finish()
        }
        Err(e) => e.response(active),
    }
}
