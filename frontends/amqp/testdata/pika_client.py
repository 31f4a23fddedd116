"""A pika client's round trip through Ferry's AMQP front-end.

Usage: pika_client.py HOST PORT. Prints "ok" and exits 0 when every step
did what RabbitMQ would do.
"""
import sys

import pika

host, port = sys.argv[1], int(sys.argv[2])
conn = pika.BlockingConnection(pika.ConnectionParameters(
    host=host, port=port, credentials=pika.PlainCredentials("guest", "guest"), heartbeat=10))
ch = conn.channel()
ch.confirm_delivery()
ch.exchange_declare("py.events", exchange_type="topic", durable=True)
ch.queue_declare("py.audit", durable=True)
ch.queue_bind("py.audit", "py.events", routing_key="user.*")

props = pika.BasicProperties(content_type="application/json", headers={"n": 7}, message_id="m1")
ch.basic_publish("py.events", "user.created", b'{"id": 1}', props, mandatory=True)

try:
    ch.basic_publish("py.events", "order.created", b"x", mandatory=True)
    sys.exit("an unroutable mandatory publish was not returned")
except pika.exceptions.UnroutableError:
    pass

method, got, body = None, None, None
for _ in range(100):
    method, got, body = ch.basic_get("py.audit")
    if method:
        break
    conn.sleep(0.02)
assert method, "basic.get found nothing"
assert body == b'{"id": 1}', body
assert method.routing_key == "user.created", method.routing_key
assert got.content_type == "application/json" and got.headers["n"] == 7 and got.message_id == "m1", got
ch.basic_reject(method.delivery_tag, requeue=True)

ch.basic_qos(prefetch_count=1)
seen = []


def on_message(channel, method, properties, body):
    seen.append((body, method.redelivered))
    channel.basic_ack(method.delivery_tag)
    channel.stop_consuming()


ch.basic_consume("py.audit", on_message)
ch.start_consuming()
assert seen == [(b'{"id": 1}', True)], seen

ch.queue_delete("py.audit")
ch.exchange_delete("py.events")
conn.close()
print("ok")
