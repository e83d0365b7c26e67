//! The OpenStack notification consumer, run by the active scheduler only (like the cron pass):
//! it reads oslo.messaging notifications from RabbitMQ (AMQP 0-9-1, `lapin`) through a durable
//! queue of Fresco's own bound to `[notifications] exchanges` x `topics` (every priority), and
//! for each one queues an async execution for every enabled notification trigger of the
//! notification's project whose event types match (`Store::fire_notification`, one fenced
//! transaction).
//!
//! Deliveries are handled in batches: those that arrived while the previous batch was written
//! (at most `[notifications] prefetch`, RabbitMQ's window of unacknowledged deliveries) are
//! queued in one fenced transaction and acknowledged together (`multiple`) after it commits.
//! Delivery is at-least-once: a notification is acknowledged only after its transaction
//! committed; a batch that could not be written (database down, leadership lost) is handed
//! back whole and comes back (to this consumer or the next leader's). A notification queues the execution of a
//! trigger once however often it comes back: the execution's id derives from the trigger and
//! the notification's `message_id`. A malformed message (not JSON, no `event_type`) is logged
//! and acknowledged on its own: it would fail the same way every time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fresco_common::conf::NotificationsSection;
use fresco_store::queue::{Notification, Store};
use futures_util::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use serde_json::{Map, Value};
use tokio::sync::watch;
use uuid::Uuid;

use crate::leader::Leadership;

/// Counters of the consumer since start.
#[derive(Debug, Default)]
pub struct NotificationStats {
    /// Notifications received (malformed ones included).
    pub received: AtomicU64,
    /// Executions queued.
    pub queued: AtomicU64,
    /// Messages that were not oslo notifications (logged, acknowledged).
    pub malformed: AtomicU64,
    /// Batches committed (each one transaction, one acknowledgement).
    pub batches: AtomicU64,
}

/// Why a message is not a notification Fresco can act on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MalformedError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("oslo.message is not a JSON string of an object")]
    BadEnvelope,
    #[error("not a JSON object")]
    NotObject,
    #[error("no event_type")]
    NoEventType,
}

/// Why the consumer stopped consuming.
#[derive(Debug, thiserror::Error)]
enum ConsumeError {
    #[error("amqp: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("the leader lease is lost")]
    Fenced,
}

/// Reads an oslo.messaging notification: the 2.0 envelope (`{"oslo.version": "2.0",
/// "oslo.message": "<json>"}`) or a bare 1.0 message. Returns `Ok(None)` for a notification
/// that names no project (nothing of a tenant's can match it).
pub fn parse(body: &[u8]) -> Result<Option<Notification>, MalformedError> {
    let outer: Value =
        serde_json::from_slice(body).map_err(|e| MalformedError::NotJson(e.to_string()))?;
    let message = match outer.get("oslo.message") {
        Some(Value::String(inner)) => {
            serde_json::from_str::<Value>(inner).map_err(|_| MalformedError::BadEnvelope)?
        }
        Some(_) => return Err(MalformedError::BadEnvelope),
        None => outer,
    };
    let Value::Object(message) = message else {
        return Err(MalformedError::NotObject);
    };
    let event_type = match message.get("event_type") {
        Some(Value::String(t)) if !t.is_empty() => t.clone(),
        _ => return Err(MalformedError::NoEventType),
    };
    let payload = message.get("payload").cloned().unwrap_or(Value::Null);
    let Some(project_id) = project_of(&message, &payload) else {
        return Ok(None);
    };
    let message_id = match message.get("message_id") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        // Without an id of its own, the same bytes are the same notification.
        _ => Uuid::new_v5(&Uuid::NAMESPACE_OID, body).to_string(),
    };
    // The request context (`_context_*`, `ctxt`) carries the caller's token and more: only
    // the project passes into the event.
    let mut event = Map::new();
    for key in [
        "event_type",
        "publisher_id",
        "priority",
        "timestamp",
        "message_id",
    ] {
        if let Some(value) = message.get(key) {
            event.insert(key.to_owned(), value.clone());
        }
    }
    event.insert("message_id".to_owned(), Value::String(message_id.clone()));
    event.insert("payload".to_owned(), payload);
    event.insert("project_id".to_owned(), Value::String(project_id.clone()));
    Ok(Some(Notification {
        project_id,
        event_type,
        message_id,
        event,
    }))
}

/// The project a notification belongs to: the owner named by its payload (`tenant_id` or
/// `project_id`, also inside Nova's versioned `nova_object.data`), else the project of its
/// request context (`_context_project_id`, `_context_tenant`, `ctxt.project_id`).
fn project_of(message: &Map<String, Value>, payload: &Value) -> Option<String> {
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    let owner =
        |object: &Value| text(object.get("tenant_id")).or_else(|| text(object.get("project_id")));
    owner(payload)
        .or_else(|| payload.get("nova_object.data").and_then(owner))
        .or_else(|| text(message.get("_context_project_id")))
        .or_else(|| text(message.get("_context_tenant")))
        .or_else(|| message.get("ctxt").and_then(|c| text(c.get("project_id"))))
}

/// Consumes until `stop` turns true (leadership lost); reconnects after failures.
pub async fn run(
    store: Store,
    config: NotificationsSection,
    leadership: Arc<Leadership>,
    stats: Arc<NotificationStats>,
    mut stop: watch::Receiver<bool>,
) {
    let pause = Duration::from_secs(config.reconnect_interval.max(1));
    while !*stop.borrow() {
        match consume(&store, &config, &leadership, &stats, &mut stop).await {
            Ok(()) => break,
            Err(ConsumeError::Fenced) => {
                log::warn!("notification consumer stops: the leader lease is lost");
                break;
            }
            Err(e) => log::warn!("notification consumer: {e}; reconnecting in {pause:?}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => {}
        }
    }
}

async fn consume(
    store: &Store,
    config: &NotificationsSection,
    leadership: &Arc<Leadership>,
    stats: &NotificationStats,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), ConsumeError> {
    let properties = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio);
    let connection = Connection::connect(&amqp_url(&config.transport_url), properties).await?;
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(config.prefetch.max(1), BasicQosOptions::default())
        .await?;
    channel
        .queue_declare(
            &config.queue,
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    for exchange in &config.exchanges {
        // The services declare their exchange (topic, not durable by oslo's default): use it
        // as it is when it exists (a probe on a channel of its own, which a missing exchange
        // closes), else declare it as oslo would.
        let probe = connection.create_channel().await?;
        let exists = probe
            .exchange_declare(
                exchange,
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    passive: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .is_ok();
        if exists {
            let _ = probe.close(200, "probed").await;
        } else {
            channel
                .exchange_declare(
                    exchange,
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        for topic in &config.topics {
            channel
                .queue_bind(
                    &config.queue,
                    exchange,
                    &format!("{topic}.*"),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
    }
    let mut deliveries = channel
        .basic_consume(
            &config.queue,
            &format!("fresco-{}", leadership.holder()),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    log::info!(
        "consuming notifications from queue {} bound to {:?} x {:?}",
        config.queue,
        config.exchanges,
        config.topics
    );
    loop {
        let first = tokio::select! {
            _ = stop.changed() => break,
            next = deliveries.next() => match next {
                Some(delivery) => delivery?,
                None => break,
            },
        };
        // What else has arrived already joins the batch (bounded by the prefetch window):
        // nothing waits for a batch to fill, so a lone notification goes through at once, and
        // under load the deliveries that came in during one transaction make the next batch.
        let mut batch = vec![first];
        while batch.len() < usize::from(config.prefetch.max(1)) {
            match deliveries.next().now_or_never() {
                Some(Some(delivery)) => batch.push(delivery?),
                Some(None) | None => break,
            }
        }
        stats
            .received
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let mut notifications = Vec::with_capacity(batch.len());
        let mut last = None;
        for delivery in batch {
            match parse(&delivery.data) {
                Ok(Some(notification)) => {
                    notifications.push(notification);
                    last = Some(delivery);
                }
                Ok(None) => {
                    log::debug!("notification without a project: acknowledged, nothing to fire");
                    delivery.ack(BasicAckOptions::default()).await?;
                }
                Err(e) => {
                    stats.malformed.fetch_add(1, Ordering::Relaxed);
                    log::warn!(
                        "malformed notification ({} bytes, routing key {}): {e}: acknowledged and skipped",
                        delivery.data.len(),
                        delivery.routing_key
                    );
                    delivery.ack(BasicAckOptions::default()).await?;
                }
            }
        }
        // The batch is acknowledged (or handed back) through its last delivery, with
        // `multiple`: every earlier delivery of this channel is either in the batch or
        // acknowledged already.
        let Some(last) = last else { continue };
        let Some(fence) = leadership.fence() else {
            requeue(&last).await?;
            return Err(ConsumeError::Fenced);
        };
        let fired = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.fire_notifications(&fence, &notifications))
                .await
        };
        match fired {
            Ok(Ok(queued)) => {
                stats.queued.fetch_add(queued as u64, Ordering::Relaxed);
                stats.batches.fetch_add(1, Ordering::Relaxed);
                last.ack(BasicAckOptions { multiple: true }).await?;
            }
            Ok(Err(e)) if e.is_fenced() => {
                requeue(&last).await?;
                return Err(ConsumeError::Fenced);
            }
            Ok(Err(e)) => {
                // Not written: they come back, after a pause so that a database outage is not
                // a busy loop.
                log::warn!("notifications not queued, they will come back: {e}");
                requeue(&last).await?;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                log::error!("notification task failed: {e}");
                requeue(&last).await?;
            }
        }
    }
    // Unacknowledged deliveries go back to the queue when the connection closes.
    let _ = connection.close(200, "standing by").await;
    Ok(())
}

/// Hands `delivery` and every earlier unacknowledged delivery of its channel back to the queue.
async fn requeue(delivery: &lapin::message::Delivery) -> Result<(), lapin::Error> {
    delivery
        .nack(BasicNackOptions {
            requeue: true,
            multiple: true,
        })
        .await
}

/// oslo's `rabbit://` transport URL as an AMQP URL (the first host of a list; lapin takes one).
/// oslo reads an empty path (`rabbit://host/`) as the default virtual host `/`, the AMQP URI
/// spec as the virtual host named ``: it becomes `%2f`.
fn amqp_url(transport_url: &str) -> String {
    let url = transport_url
        .strip_prefix("rabbit://")
        .map_or_else(|| transport_url.to_owned(), |rest| format!("amqp://{rest}"));
    let Some((scheme, rest)) = url.split_once("://") else {
        return url;
    };
    let (authority, vhost) = rest.split_once('/').unwrap_or((rest, ""));
    // oslo lists hosts as user:pass@host1:5672,user:pass@host2:5672/vhost.
    let authority = authority.split(',').next().unwrap_or_default();
    let vhost = if vhost.is_empty() { "%2f" } else { vhost };
    format!("{scheme}://{authority}/{vhost}")
}

/// The transport URL without its password, for logs.
pub fn redacted(transport_url: &str) -> String {
    match (transport_url.find("://"), transport_url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &transport_url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!(
                "{}{user}:***{}",
                &transport_url[..scheme + 3],
                &transport_url[at..]
            )
        }
        _ => transport_url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(message: &Value) -> Vec<u8> {
        json!({"oslo.version": "2.0", "oslo.message": message.to_string()})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn reads_the_oslo_envelope_and_keeps_the_context_out() {
        let body = envelope(&json!({
            "message_id": "m-1",
            "event_type": "compute.instance.create.end",
            "publisher_id": "compute.host1",
            "priority": "INFO",
            "timestamp": "2026-11-30 12:00:00.000000",
            "payload": {"tenant_id": "proj-a", "instance_id": "i-1"},
            "_context_project_id": "admin-project",
            "_context_auth_token": "secret-token",
        }));
        let n = parse(&body).expect("parses").expect("has a project");
        assert_eq!(n.project_id, "proj-a");
        assert_eq!(n.event_type, "compute.instance.create.end");
        assert_eq!(n.message_id, "m-1");
        assert!(!Value::Object(n.event.clone())
            .to_string()
            .contains("secret-token"));
        assert_eq!(n.event["payload"]["instance_id"], "i-1");
    }

    #[test]
    fn finds_the_project_in_context_or_versioned_payload() {
        let ctx = parse(&envelope(&json!({
            "event_type": "volume.create.end", "payload": {}, "_context_project_id": "p1"
        })))
        .expect("parses")
        .expect("project");
        assert_eq!(ctx.project_id, "p1");
        let versioned = parse(&envelope(&json!({
            "event_type": "instance.create.end",
            "payload": {"nova_object.data": {"tenant_id": "p2"}}
        })))
        .expect("parses")
        .expect("project");
        assert_eq!(versioned.project_id, "p2");
        let ctxt = parse(br#"{"event_type": "x", "payload": {}, "ctxt": {"project_id": "p3"}}"#)
            .expect("parses")
            .expect("project");
        assert_eq!(ctxt.project_id, "p3");
        assert_eq!(
            parse(br#"{"event_type": "x", "payload": {}}"#).expect("parses"),
            None
        );
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert!(matches!(parse(b"\xff{"), Err(MalformedError::NotJson(_))));
        assert_eq!(
            parse(br#"{"oslo.message": "{not json"}"#).err(),
            Some(MalformedError::BadEnvelope)
        );
        assert_eq!(parse(b"[1]").err(), Some(MalformedError::NotObject));
        assert_eq!(
            parse(&envelope(&json!({"payload": {"tenant_id": "p"}}))).err(),
            Some(MalformedError::NoEventType)
        );
    }

    #[test]
    fn transport_urls() {
        assert_eq!(
            amqp_url("rabbit://u:p@h1:5672,u:p@h2:5672/vh"),
            "amqp://u:p@h1:5672/vh"
        );
        assert_eq!(amqp_url("amqp://u:p@h:5672/%2f"), "amqp://u:p@h:5672/%2f");
        assert_eq!(amqp_url("rabbit://u:p@h:5672/"), "amqp://u:p@h:5672/%2f");
        assert_eq!(amqp_url("rabbit://u:p@h:5672"), "amqp://u:p@h:5672/%2f");
        assert_eq!(
            redacted("rabbit://u:secret@h:5672/"),
            "rabbit://u:***@h:5672/"
        );
    }
}
