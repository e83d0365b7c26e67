//! Periodic reports to the schedulers (`POST {url}/v1/agents/heartbeat`), each signed with the
//! agent's own key for its exact body (a heartbeat token); their replies carry the warm
//! containers to retire (`Agent::apply_retirements`).
//! An unreachable scheduler is a warning and a growing pause before the next try, never a crash.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fresco_common::wire::HeartbeatReply;

use crate::engine::ContainerEngine;
use crate::service::Agent;

/// Longest pause before trying a failed scheduler again: a restarted scheduler must hear
/// from the agents soon, as it may have to take over.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const TOKEN_TTL_S: i64 = 60;

/// One scheduler and how often it failed in a row.
struct Target {
    url: String,
    failures: u32,
    next_try: Instant,
    /// A heartbeat to it is under way.
    busy: bool,
}

impl Target {
    fn backoff(&self, interval: Duration) -> Duration {
        let factor = 1u32 << self.failures.min(6);
        (interval * factor).min(MAX_BACKOFF)
    }
}

/// Sends heartbeats until the task is dropped; also refreshes the image list each round.
pub async fn run<E: ContainerEngine>(agent: Arc<Agent<E>>, advertise_url: String) {
    let settings = agent.settings().clone();
    let Some(signer) = agent.signer().cloned() else {
        log::warn!("heartbeats disabled: no agent key ([internal_auth] agent_key_file)");
        return;
    };
    let client = match agent
        .tls()
        .client_builder()
        .timeout(Duration::from_secs(5))
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            log::warn!("heartbeats disabled: cannot build http client: {e}");
            return;
        }
    };
    let targets: Vec<Arc<Mutex<Target>>> = settings
        .scheduler_urls
        .iter()
        .map(|url| {
            Arc::new(Mutex::new(Target {
                url: format!("{}/v1/agents/heartbeat", url.trim_end_matches('/')),
                failures: 0,
                next_try: Instant::now(),
                busy: false,
            }))
        })
        .collect();
    let interval = settings.heartbeat_interval;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        agent.refresh_images().await;
        let body = match serde_json::to_vec(&agent.heartbeat(&advertise_url)) {
            Ok(body) => body,
            Err(e) => {
                log::warn!("cannot encode heartbeat: {e}");
                continue;
            }
        };
        let token = match signer.heartbeat_token(&body, TOKEN_TTL_S) {
            Ok(token) => token,
            Err(e) => {
                log::warn!("cannot sign heartbeat: {e}");
                continue;
            }
        };
        // One send per scheduler, each on its own: a scheduler that accepts the connection
        // and never answers (paused, hung host) must not delay the heartbeats of the others.
        for target in &targets {
            let url = {
                let mut t = lock(target);
                if t.busy || t.next_try > Instant::now() {
                    continue;
                }
                t.busy = true;
                t.url.clone()
            };
            // The token signs these exact bytes: they go out as they are, never re-encoded.
            let request = client
                .post(&url)
                .bearer_auth(&token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            let target = Arc::clone(target);
            let agent = Arc::clone(&agent);
            tokio::spawn(async move {
                let sent = match request.send().await {
                    // The reply names the warm containers to retire (204: nothing to say yet).
                    Ok(r) if r.status() == reqwest::StatusCode::OK => r
                        .json::<HeartbeatReply>()
                        .await
                        .map(Some)
                        .map_err(|e| format!("invalid reply: {e}")),
                    Ok(r) if r.status().is_success() => Ok(None),
                    Ok(r) => Err(format!("answered {}", r.status())),
                    Err(e) => Err(e.to_string()),
                };
                if let Ok(Some(reply)) = &sent {
                    agent.apply_retirements(reply);
                }
                let mut target = lock(&target);
                target.busy = false;
                match sent {
                    Ok(_) => {
                        if target.failures > 0 {
                            log::info!("scheduler {} reachable again", target.url);
                        }
                        target.failures = 0;
                    }
                    Err(e) => {
                        let pause = target.backoff(interval);
                        log::warn!(
                            "heartbeat to {} failed: {e} (next try in {} s)",
                            target.url,
                            pause.as_secs()
                        );
                        target.failures = target.failures.saturating_add(1);
                        target.next_try = Instant::now() + pause;
                    }
                }
            });
        }
    }
}

fn lock(target: &Mutex<Target>) -> std::sync::MutexGuard<'_, Target> {
    target.lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes idle containers past `[agent] idle_timeout`, checking every second.
pub async fn reap_idle<E: ContainerEngine>(agent: Arc<Agent<E>>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        ticker.tick().await;
        let removed = agent.expire_idle();
        if removed > 0 {
            log::debug!("removed {removed} idle container(s)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut target = Target {
            url: String::new(),
            failures: 0,
            next_try: Instant::now(),
            busy: false,
        };
        let interval = Duration::from_secs(2);
        assert_eq!(target.backoff(interval), Duration::from_secs(2));
        target.failures = 2;
        assert_eq!(target.backoff(interval), Duration::from_secs(8));
        target.failures = 30;
        assert_eq!(target.backoff(interval), MAX_BACKOFF);
    }
}
