//! Load during a fault: a batch of async executions and a stream of sync calls, and the
//! accounting of what became of them (from the suite's own database and the agents' logs).

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use diesel::sql_types::{Array, Integer, Nullable, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use reqwest::blocking::Client;
use serde_json::Value;

use crate::cluster::Cluster;

/// Longest a sync call may take: the function's timeout (3 s) plus the platform's margin. A
/// call still open after this is a hang.
pub const SYNC_LIMIT: Duration = Duration::from_secs(20);

/// How one sync call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 200 with the function's result.
    Ok,
    /// 503 with an error body that says why.
    Unavailable(String),
    /// Anything else: a hang, a 5xx other than 503, a tenant-blamed error, a body without a
    /// reason. Each one fails the suite.
    Bad(String),
}

#[derive(Debug, Clone)]
pub struct Call {
    pub started: Instant,
    pub ended: Instant,
    pub answer: Answer,
}

/// Sync invocations in a loop on a few threads until stopped.
pub struct SyncStream {
    stop: Arc<AtomicBool>,
    calls: Arc<Mutex<Vec<Call>>>,
    threads: Vec<JoinHandle<()>>,
}

impl SyncStream {
    pub fn start(api: &str, token: &str, function: &str, threads: usize) -> SyncStream {
        let stop = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let url = format!("{api}/v1/functions/{function}/invoke");
        let threads = (0..threads)
            .map(|_| {
                let (stop, calls, url, token) =
                    (stop.clone(), calls.clone(), url.clone(), token.to_owned());
                std::thread::spawn(move || {
                    let client = Client::builder().timeout(SYNC_LIMIT).build().unwrap();
                    while !stop.load(Ordering::SeqCst) {
                        let started = Instant::now();
                        let answer = call(&client, &url, &token);
                        let ended = Instant::now();
                        calls.lock().unwrap().push(Call {
                            started,
                            ended,
                            answer,
                        });
                        std::thread::sleep(Duration::from_millis(100));
                    }
                })
            })
            .collect();
        SyncStream {
            stop,
            calls,
            threads,
        }
    }

    /// The calls so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn stop(self) -> Vec<Call> {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads {
            thread.join().ok();
        }
        self.calls.lock().unwrap().clone()
    }
}

/// One sync invocation, classified.
pub fn call(client: &Client, url: &str, token: &str) -> Answer {
    let sent = client
        .post(url)
        .header("x-auth-token", token)
        .json(&serde_json::json!({"name": "fault"}))
        .send();
    let response = match sent {
        Ok(response) => response,
        Err(e) if e.is_timeout() => return Answer::Bad(format!("no answer within {SYNC_LIMIT:?}")),
        Err(e) => return Answer::Bad(format!("the api failed: {e}")),
    };
    let status = response.status().as_u16();
    let execution_status = response
        .headers()
        .get("x-execution-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Value = match response.json() {
        Ok(body) => body,
        Err(e) => return Answer::Bad(format!("{status} without a JSON body: {e}")),
    };
    match (status, execution_status.as_deref()) {
        (200, Some("succeeded")) => Answer::Ok,
        (200, other) => Answer::Bad(format!(
            "200 with execution status {other:?} (blamed on the function): {body}"
        )),
        (503, _) => match body["error"]["message"].as_str() {
            Some(message) if !message.is_empty() => Answer::Unavailable(message.to_owned()),
            _ => Answer::Bad(format!("503 without a reason: {body}")),
        },
        (other, _) => Answer::Bad(format!("{other}: {body}")),
    }
}

/// Submits `n` async executions of `function` (8 at a time); returns the ids accepted (202).
pub fn submit(cluster: &Cluster, function: &str, n: usize, event: &Value) -> Vec<String> {
    let url = cluster.url(&format!("/v1/functions/{function}/invoke?async=true"));
    let ids = Arc::new(Mutex::new(Vec::new()));
    let per_thread = n.div_ceil(8);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (url, ids, token, event) = (
                url.clone(),
                ids.clone(),
                cluster.member.clone(),
                event.clone(),
            );
            let count = per_thread.min(n.saturating_sub(t * per_thread));
            std::thread::spawn(move || {
                let client = Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .unwrap();
                for _ in 0..count {
                    let response = client
                        .post(&url)
                        .header("x-auth-token", &token)
                        .json(&event)
                        .send()
                        .unwrap();
                    let status = response.status().as_u16();
                    let body: Value = response.json().unwrap_or(Value::Null);
                    assert_eq!(status, 202, "async invocation refused: {body}");
                    ids.lock()
                        .unwrap()
                        .push(body["execution"]["id"].as_str().unwrap().to_owned());
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let ids = ids.lock().unwrap().clone();
    assert_eq!(ids.len(), n);
    ids
}

/// One execution as the database has it.
#[derive(Debug, Clone, QueryableByName)]
pub struct Row {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
    #[diesel(sql_type = Nullable<Text>)]
    pub error_type: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub error_message: Option<String>,
}

impl Row {
    pub fn is_terminal(&self) -> bool {
        !matches!(self.status.as_str(), "queued" | "running")
    }
}

/// Reads the executions `ids` (retrying while the database restarts).
pub fn rows(database_url: &str, ids: &[String]) -> Vec<Row> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let read = PgConnection::establish(database_url)
            .map_err(|e| e.to_string())
            .and_then(|mut conn| {
                diesel::sql_query(
                    "SELECT id::text AS id, status, attempts, error->>'errorType' AS error_type, \
                     error->>'errorMessage' AS error_message \
                     FROM executions WHERE id::text = ANY($1)",
                )
                .bind::<Array<Text>, _>(ids)
                .load::<Row>(&mut conn)
                .map_err(|e| e.to_string())
            });
        match read {
            Ok(rows) => return rows,
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot read executions: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// How many of `ids` are not yet terminal.
pub fn unfinished(database_url: &str, ids: &[String]) -> usize {
    let rows = rows(database_url, ids);
    ids.len() - rows.iter().filter(|r| r.is_terminal()).count()
}

/// A message without its ids and numbers, to group alike ones.
pub fn shape(message: &str) -> String {
    let mut out = String::new();
    for word in message.split_whitespace() {
        let word = if word.len() >= 32 && word.contains('-') {
            "<id>"
        } else if word.chars().any(|c| c.is_ascii_digit()) && !word.contains("Platform") {
            "<n>"
        } else {
            word
        };
        out.push_str(word);
        out.push(' ');
        if out.len() > 110 {
            break;
        }
    }
    out.trim_end().to_owned()
}

/// Runs per execution id, from the agents' logs.
pub fn runs(cluster: &Cluster) -> HashMap<String, usize> {
    let mut runs = HashMap::new();
    for (id, _) in cluster.runs() {
        *runs.entry(id).or_insert(0) += 1;
    }
    runs
}
