"""Publishes notifications for bench/notifications.sh (run with the oslo.messaging venv).

usage:
  notify_load.py preload URL EXCHANGE QUEUE N PROJECT_PREFIX PROJECTS KINDS
      declares QUEUE (durable) bound to EXCHANGE with `notifications.*`, as Fresco's consumer
      does, and publishes N notifications into it with a raw AMQP publisher (kombu, the AMQP
      library oslo.messaging's rabbit driver uses), each in the exact oslo.messaging v2
      envelope of the messagingv2 driver: notification i belongs to project
      PREFIX-(i % PROJECTS + 1) and has event type bench.event.(i % KINDS). Prints the rate.
  notify_load.py paced URL EXCHANGE N INTERVAL_S PROJECT
      publishes N notifications of PROJECT (event type bench.event.0) with the real
      oslo.messaging Notifier (driver messagingv2, topic notifications), one every INTERVAL_S
      seconds, each with the wall-clock time it was handed to the Notifier in its payload
      (`sent_at`, epoch seconds).
"""
import datetime
import json
import sys
import time
import uuid

import kombu


def envelope(project, event_type, payload):
    # oslo_messaging/notify/messaging.py + _drivers/common.py serialize_msg: the message's
    # fields, then {"oslo.version": "2.0", "oslo.message": <that message as JSON text>}.
    message = {
        "message_id": str(uuid.uuid4()),
        "publisher_id": "bench.host1",
        "event_type": event_type,
        "priority": "INFO",
        "payload": payload,
        "timestamp": datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M:%S.%f"),
        "_context_project_id": project,
    }
    return json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(message)})


def preload(url, exchange, queue, n, prefix, projects, kinds):
    amqp = url.replace("rabbit://", "amqp://", 1)
    with kombu.Connection(amqp) as conn:
        target = kombu.Exchange(exchange, "topic", durable=False)
        bound = kombu.Queue(queue, exchange=target, routing_key="notifications.*",
                            durable=True)
        declared = bound(conn.channel())
        declared.declare()
        declared.purge()  # what an interrupted run left
        producer = conn.Producer()
        started = time.monotonic()
        for i in range(n):
            project = "%s-%d" % (prefix, i % projects + 1)
            body = envelope(project, "bench.event.%d" % (i % kinds),
                            {"tenant_id": project, "n": i})
            producer.publish(body, exchange=target, routing_key="notifications.info",
                             content_type="application/json", content_encoding="utf-8")
        took = time.monotonic() - started
    print("published=%d seconds=%.3f rate=%.0f" % (n, took, n / took))


def paced(url, exchange, n, interval, project):
    import oslo_messaging
    from oslo_config import cfg

    # oslo.messaging names its RabbitMQ driver `rabbit`, and the default vhost is an empty path.
    if url.startswith("amqp://"):
        url = "rabbit://" + url[len("amqp://"):]
    if url.endswith("/%2f") or url.endswith("/%2F"):
        url = url[:-3]
    conf = cfg.ConfigOpts()
    conf([], project="fresco-bench")
    oslo_messaging.set_transport_defaults(control_exchange=exchange)
    transport = oslo_messaging.get_notification_transport(conf, url=url)
    conf.set_override("control_exchange", exchange)
    notifier = oslo_messaging.Notifier(transport, driver="messagingv2",
                                       topics=["notifications"],
                                       publisher_id="bench.host1")
    ctxt = {"project_id": project}
    for i in range(n):
        notifier.info(ctxt, "bench.event.0",
                      {"tenant_id": project, "n": i, "sent_at": time.time()})
        time.sleep(interval)
    transport.cleanup()
    print("published=%d" % n)


def main():
    mode = sys.argv[1]
    if mode == "preload":
        url, exchange, queue, n, prefix, projects, kinds = sys.argv[2:9]
        preload(url, exchange, queue, int(n), prefix, int(projects), int(kinds))
    elif mode == "paced":
        url, exchange, n, interval, project = sys.argv[2:7]
        paced(url, exchange, int(n), float(interval), project)
    else:
        sys.exit("unknown mode %s" % mode)


if __name__ == "__main__":
    main()
