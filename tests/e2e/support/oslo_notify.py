"""Publishes OpenStack notifications for the notification e2e tests, with the real
oslo.messaging Notifier (driver messagingv2, as Nova and Cinder send them), or a raw malformed
message with kombu (oslo.messaging's own AMQP library).

usage: oslo_notify.py TRANSPORT_URL < SPEC
SPEC (JSON lines): {"exchange": ..., "publisher_id": ..., "event_type": ..., "ctxt": {...},
"payload": {...}, "priority": "info"} or {"exchange": ..., "raw": "<bytes as text>"}.
"""
import json
import sys

import kombu
import oslo_messaging
from oslo_config import cfg


def main():
    url = sys.argv[1]
    notifiers = {}
    for line in sys.stdin:
        if not line.strip():
            continue
        spec = json.loads(line)
        exchange = spec["exchange"]
        if "raw" in spec:
            amqp = url.replace("rabbit://", "amqp://", 1)
            with kombu.Connection(amqp) as conn:
                target = kombu.Exchange(exchange, "topic", durable=False)
                conn.Producer().publish(
                    spec["raw"].encode(), exchange=target,
                    routing_key="notifications.info", declare=[target])
            continue
        if exchange not in notifiers:
            conf = cfg.ConfigOpts()
            conf([], project="fresco-e2e")
            oslo_messaging.set_transport_defaults(control_exchange=exchange)
            transport = oslo_messaging.get_notification_transport(conf, url=url)
            # set_transport_defaults changes the default for configs registered after it.
            conf.set_override("control_exchange", exchange)
            notifiers[exchange] = oslo_messaging.Notifier(
                transport, driver="messagingv2", topics=["notifications"])
        notifier = notifiers[exchange].prepare(publisher_id=spec["publisher_id"])
        getattr(notifier, spec.get("priority", "info"))(
            spec["ctxt"], spec["event_type"], spec["payload"])
    for notifier in notifiers.values():
        notifier.transport.cleanup()
    print("published")


if __name__ == "__main__":
    main()
