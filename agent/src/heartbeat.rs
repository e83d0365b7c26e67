//! Periodic reports to the schedulers (`POST {url}/v1/agents/heartbeat`), each signed with the
//! agent's own key for its exact body (a heartbeat token).
//! An unreachable scheduler is a warning and a growing pause before the next try, never a crash.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::ContainerEngine;
use crate::service::Agent;

const MAX_BACKOFF: Duration = Duration::from_secs(60);
const TOKEN_TTL_S: i64 = 60;

/// One scheduler and how often it failed in a row.
struct Target {
    url: String,
    failures: u32,
    next_try: Instant,
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
    let mut targets: Vec<Target> = settings
        .scheduler_urls
        .iter()
        .map(|url| Target {
            url: format!("{}/v1/agents/heartbeat", url.trim_end_matches('/')),
            failures: 0,
            next_try: Instant::now(),
        })
        .collect();
    let mut ticker = tokio::time::interval(settings.heartbeat_interval);
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
        for target in targets.iter_mut().filter(|t| t.next_try <= Instant::now()) {
            let sent = client
                .post(&target.url)
                .bearer_auth(&token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| {
                    if r.status().is_success() {
                        Ok(())
                    } else {
                        Err(format!("answered {}", r.status()))
                    }
                });
            match sent {
                Ok(()) => {
                    if target.failures > 0 {
                        log::info!("scheduler {} reachable again", target.url);
                    }
                    target.failures = 0;
                }
                Err(e) => {
                    let pause = target.backoff(settings.heartbeat_interval);
                    log::warn!(
                        "heartbeat to {} failed: {e} (next try in {} s)",
                        target.url,
                        pause.as_secs()
                    );
                    target.failures = target.failures.saturating_add(1);
                    target.next_try = Instant::now() + pause;
                }
            }
        }
    }
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
        };
        let interval = Duration::from_secs(2);
        assert_eq!(target.backoff(interval), Duration::from_secs(2));
        target.failures = 2;
        assert_eq!(target.backoff(interval), Duration::from_secs(8));
        target.failures = 30;
        assert_eq!(target.backoff(interval), MAX_BACKOFF);
    }
}
