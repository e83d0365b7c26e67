//! The client fresco-api (synchronous invocations) and fresco-scheduler (the async dispatcher)
//! run executions on agents with (feature `agent-client`).
//!
//! One place for what both callers must agree on: the connection pool (kept alive, many idle
//! connections per agent, `TCP_NODELAY`), the internal TLS configuration, the connect timeout,
//! how long an answer is waited for (the function's timeout plus a grace), the run call itself,
//! and what each way it can end means ([`AgentCallError`]): whether any of the function may
//! have run decides whether the caller may try another agent.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use serde_json::value::RawValue;

use crate::tls::InternalTls;
use uuid::Uuid;

use crate::wire::{RunResult, EXECUTION_ID_HEADER, NOT_RUN_HEADER};

/// How long a connection to an agent may take to set up: agents are on the control plane's
/// network, so anything slower is an agent that is gone.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Idle keep-alive connections kept per agent (one per concurrent invocation it serves).
pub const IDLE_PER_AGENT: usize = 512;
/// Characters of an agent's error text kept in messages.
const MESSAGE_CHARS: usize = 300;

/// How a run request to an agent failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentCallError {
    /// The agent refused it before any of the function ran (503 with `x-fresco-not-run`:
    /// `reason` is the header's value); the caller may run it elsewhere.
    #[error("agent {agent} cannot run it now: {message}")]
    NotRun {
        agent: String,
        reason: String,
        message: String,
    },
    /// The agent could not be reached (no connection was made): nothing ran.
    #[error("agent {agent} cannot be reached: {message}")]
    Unreachable { agent: String, message: String },
    /// No answer came within the function's timeout plus the grace: it may have run.
    #[error("agent {agent} did not answer within {}s", after.as_secs())]
    TimedOut { agent: String, after: Duration },
    /// The connection broke after the request was sent: the function may have run.
    #[error("agent {agent} failed: {message}")]
    Lost { agent: String, message: String },
    /// The agent refused the request itself (4xx: the ticket, the spec); another attempt would
    /// fare no better.
    #[error("agent {agent} refused the execution ({status}): {message}")]
    Refused {
        agent: String,
        status: u16,
        message: String,
    },
    /// Any other answer (5xx without `x-fresco-not-run`): the function may have run.
    #[error("agent {agent} answered {status}: {message}")]
    Failed {
        agent: String,
        status: u16,
        message: String,
    },
    /// The agent answered 200 with something that is not a run result.
    #[error("agent {agent} answered an invalid result: {message}")]
    Invalid { agent: String, message: String },
}

impl AgentCallError {
    /// The agent's `x-fresco-not-run` reason, when it refused the run before any of it ran.
    pub fn not_run_reason(&self) -> Option<&str> {
        match self {
            AgentCallError::NotRun { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// Whether the agent certainly ran none of the function (so another agent may try).
    pub fn nothing_ran(&self) -> bool {
        matches!(
            self,
            AgentCallError::NotRun { .. } | AgentCallError::Unreachable { .. }
        )
    }
}

/// The agent client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the agent client: {0}")]
pub struct AgentClientError(#[source] reqwest::Error);

/// Runs executions on agents; cheap to clone (one shared connection pool).
#[derive(Clone)]
pub struct AgentClient {
    http: reqwest::Client,
    grace: Duration,
}

impl AgentClient {
    /// A client trusting `tls`'s CA; an answer is waited for the function's timeout plus
    /// `grace`.
    pub fn new(tls: &InternalTls, grace: Duration) -> Result<Self, AgentClientError> {
        let http = tls
            .client_builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_max_idle_per_host(IDLE_PER_AGENT)
            .tcp_nodelay(true)
            .build()
            .map_err(AgentClientError)?;
        Ok(AgentClient { http, grace })
    }

    /// How long the answer to a run of a function with this timeout is waited for.
    pub fn answer_timeout(&self, timeout_s: i32) -> Duration {
        Duration::from_secs(u64::try_from(timeout_s).unwrap_or(0)) + self.grace
    }

    /// Runs an execution with `payload` as its event on the agent at `agent_url` (`agent` is
    /// its id, for messages), with the ticket the scheduler signed for it.
    pub async fn run_ticket(
        &self,
        agent: &str,
        agent_url: &str,
        ticket: &str,
        payload: &RawValue,
        timeout_s: i32,
    ) -> Result<RunResult, AgentCallError> {
        // `wire::RunRequest`, encoded from the borrowed event.
        #[derive(serde::Serialize)]
        struct Body<'a> {
            payload: &'a RawValue,
        }
        let body = serde_json::to_vec(&Body { payload }).map_err(|e| AgentCallError::Invalid {
            agent: agent.to_owned(),
            message: format!("cannot encode the run request: {e}"),
        })?;
        let url = format!("{}/v1/run", agent_url.trim_end_matches('/'));
        let request = self
            .http
            .post(url)
            .header(AUTHORIZATION, format!("Bearer {ticket}"))
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        self.send(agent, request, self.answer_timeout(timeout_s))
            .await
    }

    /// Runs execution `execution_id` under a grant: the event is the body as it is (no
    /// envelope, no second encoding), the execution id a header.
    pub async fn run_grant(
        &self,
        agent: &str,
        agent_url: &str,
        grant: &str,
        execution_id: Uuid,
        payload: &RawValue,
        timeout_s: i32,
    ) -> Result<RunResult, AgentCallError> {
        let url = format!("{}/v1/run", agent_url.trim_end_matches('/'));
        let request = self
            .http
            .post(url)
            .header(AUTHORIZATION, format!("Grant {grant}"))
            .header(EXECUTION_ID_HEADER, execution_id.to_string())
            .header(CONTENT_TYPE, "application/json")
            .body(payload.get().as_bytes().to_vec());
        self.send(agent, request, self.answer_timeout(timeout_s))
            .await
    }

    async fn send(
        &self,
        agent: &str,
        request: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<RunResult, AgentCallError> {
        let response = request.timeout(timeout).send().await.map_err(|e| {
            let agent = agent.to_owned();
            if e.is_timeout() {
                AgentCallError::TimedOut {
                    agent,
                    after: timeout,
                }
            } else if e.is_connect() {
                AgentCallError::Unreachable {
                    agent,
                    message: error_chain(&e),
                }
            } else {
                AgentCallError::Lost {
                    agent,
                    message: error_chain(&e),
                }
            }
        })?;
        let status = response.status();
        if status.is_success() {
            return match response.bytes().await {
                Ok(body) => serde_json::from_slice::<RunResult>(&body).map_err(|e| {
                    AgentCallError::Invalid {
                        agent: agent.to_owned(),
                        message: e.to_string(),
                    }
                }),
                Err(e) if e.is_timeout() => Err(AgentCallError::TimedOut {
                    agent: agent.to_owned(),
                    after: timeout,
                }),
                Err(e) => Err(AgentCallError::Lost {
                    agent: agent.to_owned(),
                    message: error_chain(&e),
                }),
            };
        }
        let not_run = response
            .headers()
            .get(NOT_RUN_HEADER)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let text = response.text().await.unwrap_or_default();
        Err(refusal(agent, status, not_run, &text))
    }
}

/// What a non-2xx answer means.
fn refusal(agent: &str, status: StatusCode, not_run: Option<String>, text: &str) -> AgentCallError {
    let agent = agent.to_owned();
    let message = agent_message(text);
    match not_run {
        Some(reason) if status == StatusCode::SERVICE_UNAVAILABLE => AgentCallError::NotRun {
            agent,
            reason,
            message,
        },
        _ if status.is_client_error() => AgentCallError::Refused {
            agent,
            status: status.as_u16(),
            message,
        },
        _ => AgentCallError::Failed {
            agent,
            status: status.as_u16(),
            message,
        },
    }
}

/// The message of an agent's JSON error body (`{"error": {"message"}}`), else the start of
/// its text.
pub fn agent_message(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| text.chars().take(MESSAGE_CHARS).collect())
}

/// An error with its sources, `: `-separated.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_map_to_one_outcome_each() {
        let json = r#"{"error": {"code": 503, "message": "container engine unavailable"}}"#;
        let cases: Vec<(u16, Option<&str>, &str, &str, bool)> = vec![
            // A 503 with the header: nothing ran.
            (503, Some("engine-unavailable"), json, "NotRun", true),
            // A 503 without it (a proxy, an overloaded server): it may have run.
            (503, None, "busy", "Failed", false),
            (401, None, "bad ticket", "Refused", false),
            (409, None, "replayed", "Refused", false),
            // The header on another status does not make it a refusal before running.
            (500, Some("no-capacity"), "oops", "Failed", false),
        ];
        for (status, header, text, kind, nothing_ran) in cases {
            let error = refusal(
                "a1",
                StatusCode::from_u16(status).expect("status"),
                header.map(str::to_owned),
                text,
            );
            let name = format!("{error:?}");
            assert!(name.starts_with(kind), "{status} {header:?}: {name}");
            assert_eq!(error.nothing_ran(), nothing_ran, "{status} {header:?}");
        }
        let error = refusal(
            "a1",
            StatusCode::SERVICE_UNAVAILABLE,
            Some("engine-unavailable".into()),
            json,
        );
        assert_eq!(
            error.to_string(),
            "agent a1 cannot run it now: container engine unavailable"
        );
    }

    #[test]
    fn long_error_texts_are_cut() {
        let text = "x".repeat(10_000);
        assert_eq!(agent_message(&text).len(), MESSAGE_CHARS);
    }

    #[tokio::test]
    async fn an_agent_that_is_not_listening_is_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let client =
            AgentClient::new(&InternalTls::default(), Duration::from_secs(1)).expect("client");
        let payload = RawValue::from_string("{}".into()).expect("json");
        let error = client
            .run_ticket("a1", &format!("http://127.0.0.1:{port}"), "t", &payload, 1)
            .await
            .expect_err("nobody listens");
        assert!(error.nothing_ran(), "{error:?}");
        assert!(
            matches!(error, AgentCallError::Unreachable { .. }),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn an_agent_that_says_nothing_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let held = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.expect("accept");
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(socket);
        });
        let client =
            AgentClient::new(&InternalTls::default(), Duration::from_millis(300)).expect("client");
        let payload = RawValue::from_string("{}".into()).expect("json");
        let error = client
            .run_ticket("a1", &format!("http://127.0.0.1:{port}"), "t", &payload, 0)
            .await
            .expect_err("no answer");
        assert!(!error.nothing_ran(), "{error:?}");
        assert!(
            matches!(error, AgentCallError::TimedOut { .. }),
            "{error:?}"
        );
        held.abort();
    }
}
