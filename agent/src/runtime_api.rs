//! The AWS Lambda Runtime API, served to one container by the agent itself: on
//! `127.0.0.1:9001` inside the container's own network namespace (bound there by the agent,
//! see `host::bind_in_netns`), where the runtime talks to it directly; nothing relays it. The
//! per-container unix socket in the container's run directory serves the same API to the
//! shim, which only uses it to wait for the start signal.
//!
//! One invocation at a time per container (the Lambda model). The agent `dispatch`es an
//! invocation and waits on the returned receiver; the runtime long-polls
//! `GET /2018-06-01/runtime/invocation/next`, then posts `.../{id}/response` or
//! `.../{id}/error`; a runtime that cannot load the handler posts `/runtime/init/error`.
//! Everything read from the socket comes from the tenant's container and is checked: request
//! ids must match the invocation handed out, bodies are capped, unknown paths are 404.
//!
//! One Fresco-only path serves the shim: `GET .../fresco/start` answers once the agent has
//! finished preparing the sandbox (its network, for one that has network), so no function
//! code runs before.
//!
//! A pre-warmed sandbox (see `prewarm`) is started before any function is known. Its runtime
//! waits for one: a managed runtime's bootstrap on `GET .../fresco/function` (JSON: the
//! function's environment), a `provided` sandbox's shim on `fresco/start` itself (answered
//! with the environment as NUL-ended `NAME=value` entries), until `specialize` is called at
//! claim time. Both waits count as idle, so the sandbox is frozen while it waits.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::clock::now_ms;

use bytes::Bytes;
use fresco_common::wire::FunctionError;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::engine::ExitInfo;
use crate::logs::OutputLimit;

/// Largest response a function may return (Lambda's synchronous limit).
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;
/// Largest error report accepted from a runtime.
const MAX_ERROR_BYTES: usize = 1024 * 1024;
/// Connections one container may hold open to its socket at once.
const MAX_CONNECTIONS: usize = 32;
/// Longest error message or stack frame kept, in bytes.
const MAX_ERROR_TEXT: usize = 64 * 1024;
const MAX_STACK_FRAMES: usize = 200;
const PREFIX: &str = "/2018-06-01/runtime";

/// An event handed to the runtime by `GET .../invocation/next`.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    pub payload: Bytes,
    /// The function's time limit. The deadline the runtime is given is counted from the moment
    /// it takes the event, as Lambda does: a cold start's initialisation is not the handler's time.
    pub timeout_ms: u64,
    pub function_arn: String,
    pub trace_id: String,
    /// Told when the runtime takes the event (the handler's clock starts then).
    pub taken: Arc<tokio::sync::Notify>,
}

/// How an invocation ended, from the container's side.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Response(Bytes),
    Error(FunctionError),
    /// The runtime reported that it could not initialise (e.g. the handler does not import).
    InitError(FunctionError),
    /// The response exceeded `MAX_RESPONSE_BYTES`.
    ResponseTooLarge,
    /// The container stopped.
    Exited(ExitInfo),
    /// The container passed its output limit (it is being killed).
    OutputLimit(OutputLimit),
    /// The agent lost track of the container: its engine stopped answering.
    EngineLost(String),
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DispatchError {
    #[error("container already runs an invocation")]
    Busy,
    #[error("container can no longer run invocations")]
    Dead(Outcome),
}

struct Pending {
    request_id: String,
    reply: oneshot::Sender<Outcome>,
}

#[derive(Default)]
struct Slot {
    pending: Option<Pending>,
    /// Set once the container cannot serve any more invocations.
    terminal: Option<Outcome>,
}

/// The agent's side of one container's Runtime API.
pub struct RuntimeChannel {
    queue_tx: mpsc::Sender<Invocation>,
    queue_rx: tokio::sync::Mutex<mpsc::Receiver<Invocation>>,
    slot: Mutex<Slot>,
    closed: watch::Sender<bool>,
    /// Set when the sandbox is ready for the runtime to start (`fresco/start`).
    ready: watch::Sender<bool>,
    /// Long polls of `invocation/next` waiting (the runtime is idle).
    polling: watch::Sender<u32>,
    connections: AtomicUsize,
    /// A pre-warmed sandbox: how its runtime waits for a function (`None`: it is started for
    /// one already).
    prewarmed: Option<PrewarmedWait>,
    /// The environment of the function that claimed a pre-warmed sandbox.
    function: watch::Sender<Option<Arc<Vec<String>>>>,
}

/// Where a pre-warmed sandbox's runtime waits for the function that claims it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrewarmedWait {
    /// The shim waits on `fresco/start` (nothing can start before the function's code).
    Start,
    /// The managed runtime's bootstrap waits on `fresco/function`.
    Function,
}

impl Default for RuntimeChannel {
    fn default() -> Self {
        Self::new()
    }
}

impl RuntimeChannel {
    pub fn new() -> Self {
        let (queue_tx, queue_rx) = mpsc::channel(1);
        Self {
            queue_tx,
            queue_rx: tokio::sync::Mutex::new(queue_rx),
            slot: Mutex::new(Slot::default()),
            closed: watch::channel(false).0,
            ready: watch::channel(false).0,
            polling: watch::channel(0).0,
            connections: AtomicUsize::new(0),
            prewarmed: None,
            function: watch::channel(None).0,
        }
    }

    /// The channel of a pre-warmed sandbox, whose runtime waits for a function as `wait` says.
    pub fn prewarmed(wait: PrewarmedWait) -> Self {
        Self {
            prewarmed: Some(wait),
            ..Self::new()
        }
    }

    /// Gives a pre-warmed sandbox's runtime the environment of the function that claimed it
    /// (`NAME=value` entries): from here on it starts that function.
    pub fn specialize(&self, env: Vec<String>) {
        self.function.send_replace(Some(Arc::new(env)));
    }

    /// Waits for `specialize`, counted as idle; `None` when the channel closes first.
    async fn claimed(&self) -> Option<Arc<Vec<String>>> {
        let mut closed = self.closed.subscribe();
        let mut function = self.function.subscribe();
        let _polling = PollingGuard::new(&self.polling);
        tokio::select! {
            env = function.wait_for(Option::is_some) => env.ok().and_then(|e| e.clone()),
            _ = closed.wait_for(|c| *c) => None,
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands an invocation to the container; the receiver yields its outcome.
    pub fn dispatch(
        &self,
        invocation: Invocation,
    ) -> Result<oneshot::Receiver<Outcome>, DispatchError> {
        let mut slot = self.slot();
        if let Some(terminal) = &slot.terminal {
            return Err(DispatchError::Dead(terminal.clone()));
        }
        if slot.pending.is_some() {
            return Err(DispatchError::Busy);
        }
        let (reply, rx) = oneshot::channel();
        let request_id = invocation.request_id.clone();
        if self.queue_tx.try_send(invocation).is_err() {
            return Err(DispatchError::Busy);
        }
        slot.pending = Some(Pending { request_id, reply });
        Ok(rx)
    }

    /// Forgets the pending invocation (after a timeout); a late answer then gets 400.
    pub fn abandon(&self) {
        self.slot().pending = None;
    }

    /// The container stopped: the pending invocation (if any) ends with `Exited`.
    pub fn container_exited(&self, exit: ExitInfo) {
        self.terminate(Outcome::Exited(exit));
    }

    /// The container passed its output limit: the pending invocation (if any) ends with it.
    pub fn output_limit_passed(&self, limit: OutputLimit) {
        self.terminate(Outcome::OutputLimit(limit));
    }

    /// Waits, at most `max`, until the runtime asks for its next event (it has finished with
    /// the last one: the moment Lambda ends an invocation), blocked in a read; false on
    /// timeout.
    pub async fn wait_until_idle(&self, max: std::time::Duration) -> bool {
        let mut polling = self.polling.subscribe();
        tokio::time::timeout(max, polling.wait_for(|p| *p > 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The sandbox is prepared: the shim may start the runtime.
    pub fn set_ready(&self) {
        self.ready.send_replace(true);
    }

    /// The engine stopped answering about the container: the pending invocation (if any) ends
    /// with `EngineLost`, a platform failure.
    pub fn engine_lost(&self, reason: String) {
        self.terminate(Outcome::EngineLost(reason));
    }

    /// Marks the container unusable and ends the pending invocation with `outcome`.
    fn terminate(&self, outcome: Outcome) {
        let mut slot = self.slot();
        if slot.terminal.is_none() {
            slot.terminal = Some(outcome.clone());
        }
        if let Some(pending) = slot.pending.take() {
            let _ = pending.reply.send(outcome);
        }
    }

    /// Whether the container can take another invocation.
    pub fn is_usable(&self) -> bool {
        self.slot().terminal.is_none()
    }

    /// Whether `close` was called (the container is being removed).
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Ends long polls and refuses further requests.
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Completes the pending invocation `request_id` with `outcome`; false when the id is not
    /// the one handed out.
    fn complete(&self, request_id: &str, outcome: Outcome) -> bool {
        let mut slot = self.slot();
        match &slot.pending {
            Some(pending) if pending.request_id == request_id => {}
            _ => return false,
        }
        if let Some(pending) = slot.pending.take() {
            let _ = pending.reply.send(outcome);
        }
        true
    }

    fn is_pending(&self, request_id: &str) -> bool {
        matches!(&self.slot().pending, Some(p) if p.request_id == request_id)
    }

    /// Serves the Runtime API on `listener` until the channel is closed.
    pub fn serve<L: RuntimeListener>(self: &Arc<Self>, listener: L) -> JoinHandle<()> {
        let channel = Arc::clone(self);
        tokio::spawn(async move {
            let mut closed = channel.closed.subscribe();
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept_one() => match accepted {
                        Ok(stream) => stream,
                        Err(e) => {
                            log::warn!("runtime api accept: {e}");
                            continue;
                        }
                    },
                    _ = closed.wait_for(|c| *c) => return,
                };
                if channel.connections.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                    channel.connections.fetch_sub(1, Ordering::SeqCst);
                    continue;
                }
                let conn_channel = Arc::clone(&channel);
                tokio::spawn(async move {
                    let service_channel = Arc::clone(&conn_channel);
                    let service = hyper::service::service_fn(move |req| {
                        let channel = Arc::clone(&service_channel);
                        async move { Ok::<_, Infallible>(channel.handle(req).await) }
                    });
                    let served = hyper::server::conn::http1::Builder::new()
                        .title_case_headers(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    if let Err(e) = served {
                        log::debug!("runtime api connection: {e}");
                    }
                    conn_channel.connections.fetch_sub(1, Ordering::SeqCst);
                });
            }
        })
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_owned();
        let Some(route) = path.strip_prefix(PREFIX) else {
            return problem(StatusCode::NOT_FOUND, "NotFound", "unknown path");
        };
        let parts: Vec<&str> = route.trim_start_matches('/').split('/').collect();
        match (req.method(), parts.as_slice()) {
            (&Method::GET, ["invocation", "next"]) => self.next().await,
            (&Method::POST, ["invocation", id, "response"]) => {
                let id = (*id).to_owned();
                self.post_response(&id, req).await
            }
            (&Method::POST, ["invocation", id, "error"]) => {
                let id = (*id).to_owned();
                self.post_error(&id, req).await
            }
            (&Method::GET, ["fresco", "start"]) => self.start().await,
            (&Method::GET, ["fresco", "function"])
                if self.prewarmed == Some(PrewarmedWait::Function) =>
            {
                self.function_env().await
            }
            (&Method::POST, ["init", "error"]) => {
                let error = read_error(req).await;
                self.terminate(Outcome::InitError(error));
                accepted()
            }
            (
                _,
                ["invocation", "next"]
                | ["invocation", _, "response" | "error"]
                | ["init", "error"],
            ) => problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "method not allowed",
            ),
            _ => problem(StatusCode::NOT_FOUND, "NotFound", "unknown path"),
        }
    }

    async fn next(&self) -> Response<Full<Bytes>> {
        let mut closed = self.closed.subscribe();
        let mut queue = tokio::select! {
            queue = self.queue_rx.lock() => queue,
            _ = closed.wait_for(|c| *c) => return shutting_down(),
        };
        let polling = PollingGuard::new(&self.polling);
        let invocation = tokio::select! {
            invocation = queue.recv() => invocation,
            _ = closed.wait_for(|c| *c) => None,
        };
        drop(polling);
        let Some(invocation) = invocation else {
            return shutting_down();
        };
        let deadline_ms = now_ms().saturating_add(invocation.timeout_ms);
        invocation.taken.notify_one();
        let mut response = Response::new(Full::new(invocation.payload));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in [
            ("lambda-runtime-aws-request-id", invocation.request_id),
            ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
            (
                "lambda-runtime-invoked-function-arn",
                invocation.function_arn,
            ),
            ("lambda-runtime-trace-id", invocation.trace_id),
        ] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        response
    }

    /// The shim's wait before it starts the runtime: 200 once the sandbox is ready, 410 when
    /// the container is being removed instead.
    async fn start(&self) -> Response<Full<Bytes>> {
        let mut closed = self.closed.subscribe();
        let mut ready = self.ready.subscribe();
        tokio::select! {
            result = ready.wait_for(|r| *r) => match result {
                Ok(_) => {}
                Err(_) => return shutting_down(),
            },
            _ = closed.wait_for(|c| *c) => return shutting_down(),
        }
        if self.prewarmed != Some(PrewarmedWait::Start) {
            return json_response(StatusCode::OK, serde_json::json!({"status": "ready"}));
        }
        let Some(env) = self.claimed().await else {
            return shutting_down();
        };
        let mut body = Vec::new();
        for entry in env.iter() {
            body.extend_from_slice(entry.as_bytes());
            body.push(0);
        }
        let mut response = Response::new(Full::new(Bytes::from(body)));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-fresco-env"),
        );
        response
    }

    /// A pre-warmed managed runtime's wait for the function that claims its sandbox: that
    /// function's environment, as a JSON object.
    async fn function_env(&self) -> Response<Full<Bytes>> {
        let Some(env) = self.claimed().await else {
            return shutting_down();
        };
        // The platform's own variables are for the shim (which removes them) and stay out.
        let object: serde_json::Map<String, serde_json::Value> = env
            .iter()
            .filter_map(|entry| entry.split_once('='))
            .filter(|(name, _)| !name.starts_with("FRESCO_"))
            .map(|(name, value)| (name.to_owned(), serde_json::Value::from(value)))
            .collect();
        json_response(StatusCode::OK, serde_json::Value::Object(object))
    }

    async fn post_response(&self, id: &str, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if !self.is_pending(id) {
            return invalid_request_id(id);
        }
        let outcome = match Limited::new(req.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
        {
            Ok(body) => Outcome::Response(body.to_bytes()),
            Err(_) => Outcome::ResponseTooLarge,
        };
        let too_large = outcome == Outcome::ResponseTooLarge;
        if !self.complete(id, outcome) {
            return invalid_request_id(id);
        }
        if too_large {
            return problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                "response payload exceeds 6291456 bytes",
            );
        }
        accepted()
    }

    async fn post_error(&self, id: &str, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if !self.is_pending(id) {
            return invalid_request_id(id);
        }
        let error = read_error(req).await;
        if !self.complete(id, Outcome::Error(error)) {
            return invalid_request_id(id);
        }
        accepted()
    }
}

/// A listener the Runtime API is served on: the container's loopback port, or its unix socket.
pub trait RuntimeListener: Send + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept_one(&self)
        -> impl std::future::Future<Output = std::io::Result<Self::Stream>> + Send;
}

impl RuntimeListener for UnixListener {
    type Stream = tokio::net::UnixStream;
    async fn accept_one(&self) -> std::io::Result<Self::Stream> {
        self.accept().await.map(|(stream, _)| stream)
    }
}

impl RuntimeListener for TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn accept_one(&self) -> std::io::Result<Self::Stream> {
        let (stream, _) = self.accept().await?;
        // Small request/response exchanges: no Nagle delay on the answers.
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// Counts one waiting long poll for as long as it lives (also when its connection goes away
/// mid-wait).
struct PollingGuard<'a>(&'a watch::Sender<u32>);

impl<'a> PollingGuard<'a> {
    fn new(polling: &'a watch::Sender<u32>) -> Self {
        polling.send_modify(|p| *p += 1);
        Self(polling)
    }
}

impl Drop for PollingGuard<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|p| *p = p.saturating_sub(1));
    }
}

/// Reads a runtime's error report; anything malformed still becomes a readable error.
async fn read_error(req: Request<Incoming>) -> FunctionError {
    let header_type = req
        .headers()
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match Limited::new(req.into_body(), MAX_ERROR_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => Bytes::from_static(b"error report too large"),
    };
    parse_error(&body, header_type.as_deref())
}

/// Builds a `FunctionError` from `{"errorMessage","errorType","stackTrace"}`, leniently.
pub fn parse_error(body: &[u8], header_type: Option<&str>) -> FunctionError {
    let value: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        value
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(|v| v.as_str())
            .map(|s| truncate(s, MAX_ERROR_TEXT))
    };
    let error_type = field("errorType")
        .or_else(|| header_type.map(|t| truncate(t, 256)))
        .unwrap_or_else(|| "Unhandled".to_owned());
    let error_message = field("errorMessage").unwrap_or_else(|| {
        if value.is_some() {
            String::new()
        } else {
            truncate(&String::from_utf8_lossy(body), MAX_ERROR_TEXT)
        }
    });
    let stack_trace = value
        .as_ref()
        .and_then(|v| v.get("stackTrace"))
        .and_then(|v| v.as_array())
        .map(|frames| {
            frames
                .iter()
                .take(MAX_STACK_FRAMES)
                .map(|f| match f.as_str() {
                    Some(s) => truncate(s, MAX_ERROR_TEXT),
                    None => truncate(&f.to_string(), MAX_ERROR_TEXT),
                })
                .collect()
        })
        .unwrap_or_default();
    FunctionError {
        error_type,
        error_message,
        stack_trace,
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

fn accepted() -> Response<Full<Bytes>> {
    json_response(StatusCode::ACCEPTED, serde_json::json!({"status": "OK"}))
}

fn shutting_down() -> Response<Full<Bytes>> {
    problem(
        StatusCode::GONE,
        "ShuttingDown",
        "container is being removed",
    )
}

fn invalid_request_id(id: &str) -> Response<Full<Bytes>> {
    problem(
        StatusCode::BAD_REQUEST,
        "InvalidRequestID",
        &format!(
            "request id {:?} is not the invocation in progress",
            truncate(id, 128)
        ),
    )
}

fn problem(status: StatusCode, error_type: &str, message: &str) -> Response<Full<Bytes>> {
    json_response(
        status,
        serde_json::json!({"errorType": error_type, "errorMessage": message}),
    )
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation(id: &str) -> Invocation {
        Invocation {
            request_id: id.to_owned(),
            payload: Bytes::from_static(b"{}"),
            timeout_ms: 1000,
            function_arn: "arn".to_owned(),
            trace_id: "t".to_owned(),
            taken: Arc::default(),
        }
    }

    #[test]
    fn errors_are_parsed_leniently() {
        let e = parse_error(
            br#"{"errorMessage":"boom","errorType":"ValueError","stackTrace":["a",{"f":1}]}"#,
            None,
        );
        assert_eq!(e.error_type, "ValueError");
        assert_eq!(e.error_message, "boom");
        assert_eq!(e.stack_trace, vec!["a".to_owned(), r#"{"f":1}"#.to_owned()]);
        let e = parse_error(b"not json", Some("Runtime.Crash"));
        assert_eq!(e.error_type, "Runtime.Crash");
        assert_eq!(e.error_message, "not json");
        let e = parse_error(br#"{"errorMessage": 5}"#, None);
        assert_eq!(e.error_type, "Unhandled");
        assert_eq!(e.error_message, "");
        let long = "x".repeat(MAX_ERROR_TEXT + 10);
        let e = parse_error(long.as_bytes(), None);
        assert_eq!(e.error_message.len(), MAX_ERROR_TEXT);
    }

    #[test]
    fn one_invocation_at_a_time_and_ids_must_match() {
        let channel = RuntimeChannel::new();
        let mut rx = channel.dispatch(invocation("a")).expect("dispatch");
        assert_eq!(
            channel.dispatch(invocation("b")).err(),
            Some(DispatchError::Busy)
        );
        assert!(!channel.complete("b", Outcome::Response(Bytes::new())));
        assert!(channel.complete("a", Outcome::Response(Bytes::from_static(b"1"))));
        assert_eq!(
            rx.try_recv().expect("outcome"),
            Outcome::Response(Bytes::from_static(b"1"))
        );
        assert!(
            !channel.complete("a", Outcome::Response(Bytes::new())),
            "answered once"
        );
    }

    #[test]
    fn an_exited_container_ends_its_invocation_and_refuses_more() {
        let channel = RuntimeChannel::new();
        let mut rx = channel.dispatch(invocation("a")).expect("dispatch");
        let exit = ExitInfo {
            exit_code: 137,
            oom_killed: true,
        };
        channel.container_exited(exit);
        assert_eq!(rx.try_recv().expect("outcome"), Outcome::Exited(exit));
        assert!(!channel.is_usable());
        assert_eq!(
            channel.dispatch(invocation("b")).err(),
            Some(DispatchError::Dead(Outcome::Exited(exit)))
        );
    }

    #[tokio::test]
    async fn the_runtime_starts_only_once_the_sandbox_is_ready_and_idleness_is_seen() {
        use crate::engine::fake::http;
        let dir = std::env::temp_dir().join(format!("rt-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("dir");
        let socket = dir.join("runtime.sock");
        let channel = Arc::new(RuntimeChannel::new());
        let server = channel.serve(UnixListener::bind(&socket).expect("bind"));

        let waiting = tokio::spawn({
            let socket = socket.clone();
            async move { http(&socket, "GET", "/fresco/start", b"").await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(
            !waiting.is_finished(),
            "no start before the sandbox is ready"
        );
        channel.set_ready();
        let (status, _, _) = waiting.await.expect("join").expect("answer");
        assert_eq!(status, 200);

        // Idle means the runtime waits for an event.
        let short = std::time::Duration::from_millis(50);
        assert!(!channel.wait_until_idle(short).await);
        let next = tokio::spawn({
            let socket = socket.clone();
            async move { http(&socket, "GET", "/invocation/next", b"").await }
        });
        assert!(
            channel
                .wait_until_idle(std::time::Duration::from_secs(2))
                .await
        );

        // A container being removed: waits end, and a new start is refused.
        channel.close();
        assert_eq!(next.await.expect("join").expect("answer").0, 410);
        server.abort();
        let closed = Arc::new(RuntimeChannel::new());
        let _ = std::fs::remove_file(&socket);
        let server = closed.serve(UnixListener::bind(&socket).expect("bind"));
        let refused = tokio::spawn({
            let socket = socket.clone();
            async move { http(&socket, "GET", "/fresco/start", b"").await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        closed.close();
        assert_eq!(refused.await.expect("join").expect("answer").0, 410);
        server.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
