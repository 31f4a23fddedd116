#!/usr/bin/env python3
"""Eclipse Paho's Python client (python3-paho-mqtt 1.6) against Ferry.

Run by TestPythonPaho as: paho_interop.py HOST PORT. Prints a line per case
and "all passed" at the end; exits non-zero at the first failure.
"""
import queue
import sys
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

HOST, PORT = sys.argv[1], int(sys.argv[2])
TIMEOUT = 10


def fail(msg):
    print("FAIL: " + msg, flush=True)
    sys.exit(1)


class Client:
    """A connected client whose messages land in a queue."""

    def __init__(self, cid, v5=True, clean=True, expiry=None, max_packet=None, will=None, keepalive=30):
        self.v5 = v5
        self.msgs = queue.Queue()
        self.acked = queue.Queue()
        self.c = mqtt.Client(client_id=cid, protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                             clean_session=None if v5 else clean)
        self.c.on_message = lambda c, u, m: self.msgs.put(m)
        self.c.on_publish = lambda c, u, mid: self.acked.put(mid)
        self.connected = queue.Queue()
        if v5:
            self.c.on_connect = lambda c, u, f, rc, p=None: self.connected.put(rc)
        else:
            self.c.on_connect = lambda c, u, f, rc: self.connected.put(rc)
        if will:
            self.c.will_set(*will)
        props = None
        if v5:
            props = Properties(PacketTypes.CONNECT)
            if expiry is not None:
                props.SessionExpiryInterval = expiry
            if max_packet is not None:
                props.MaximumPacketSize = max_packet
            self.c.connect(HOST, PORT, keepalive=keepalive, clean_start=clean, properties=props)
        else:
            self.c.connect(HOST, PORT, keepalive=keepalive)
        self.c.loop_start()
        rc = self.connected.get(timeout=TIMEOUT)
        if rc != 0:
            fail("%s: CONNACK %s" % (cid, rc))

    def subscribe(self, topic, qos=1):
        got = queue.Queue()
        self.c.on_subscribe = lambda c, u, mid, granted, *rest: got.put(granted)
        self.c.subscribe(topic, qos)
        granted = got.get(timeout=TIMEOUT)
        code = granted[0].value if hasattr(granted[0], "value") else granted[0]
        if code > 2:
            fail("SUBACK %s for %s" % (granted, topic))

    def publish(self, topic, payload, qos=1, props=None, retain=False):
        info = self.c.publish(topic, payload, qos, retain, properties=props)
        if qos > 0:
            mid = self.acked.get(timeout=TIMEOUT)
            if mid != info.mid:
                fail("acknowledged mid %d, published %d" % (mid, info.mid))
        return info

    def expect(self, topic):
        try:
            m = self.msgs.get(timeout=TIMEOUT)
        except queue.Empty:
            fail("nothing arrived on %s" % topic)
        if m.topic != topic:
            fail("got %r on %s, want %s" % (m.payload, m.topic, topic))
        return m

    def expect_nothing(self, within=0.7):
        try:
            m = self.msgs.get(timeout=within)
        except queue.Empty:
            return
        fail("got %r on %s, want nothing" % (m.payload, m.topic))

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def request_response():
    responder = Client("py-responder")
    responder.subscribe("pysvc/echo")
    requester = Client("py-requester")
    requester.subscribe("pyreplies/requester")
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = "pyreplies/requester"
    props.CorrelationData = b"\x00corr-1"
    props.ContentType = "text/plain"
    props.PayloadFormatIndicator = 1
    props.UserProperty = ("trace", "t-1")
    requester.publish("pysvc/echo", b"ping", props=props)
    m = responder.expect("pysvc/echo")
    p = m.properties
    if getattr(p, "ResponseTopic", None) != "pyreplies/requester" or getattr(p, "CorrelationData", None) != b"\x00corr-1":
        fail("request delivered without its response topic / correlation data: %s" % p)
    if getattr(p, "ContentType", None) != "text/plain" or getattr(p, "PayloadFormatIndicator", None) != 1:
        fail("request delivered without content type / payload format: %s" % p)
    if ("trace", "t-1") not in getattr(p, "UserProperty", []):
        fail("request delivered without its user property: %s" % p)
    reply = Properties(PacketTypes.PUBLISH)
    reply.CorrelationData = p.CorrelationData
    responder.publish(p.ResponseTopic, b"pong", props=reply)
    r = requester.expect("pyreplies/requester")
    if r.payload != b"pong" or getattr(r.properties, "CorrelationData", None) != b"\x00corr-1":
        fail("reply %r with %s" % (r.payload, r.properties))
    responder.close()
    requester.close()
    print("ok request/response with Response Topic and Correlation Data", flush=True)


def expiry():
    sub = Client("py-exp-sub", clean=True, expiry=300)
    sub.subscribe("pyexp/#")
    sub.close()
    pub = Client("py-exp-pub")
    short = Properties(PacketTypes.PUBLISH)
    short.MessageExpiryInterval = 1
    pub.publish("pyexp/short", b"short", props=short)
    long_ = Properties(PacketTypes.PUBLISH)
    long_.MessageExpiryInterval = 100
    pub.publish("pyexp/long", b"long", props=long_)
    pub.close()
    time.sleep(2.2)
    sub = Client("py-exp-sub", clean=False, expiry=300)
    m = sub.expect("pyexp/long")
    left = getattr(m.properties, "MessageExpiryInterval", None)
    if left is None or not 90 <= left <= 98:
        fail("delivered with a Message Expiry Interval of %s, want 100 less the time it waited" % left)
    sub.expect_nothing()
    sub.close()
    print("ok expired message not delivered, remaining interval %d s forwarded" % left, flush=True)


def empty_first_level():
    sub = Client("py-slash-sub", v5=False)
    for f in ("/TopicA", "+/TopicA", "#"):
        sub.subscribe(f)
    pub = Client("py-slash-pub", v5=True)
    pub.publish("/TopicA", b"hello")
    m = sub.expect("/TopicA")
    if m.payload != b"hello":
        fail("got %r" % m.payload)
    sub.expect_nothing(0.3)  # overlapping filters deliver once
    # A will on /TopicA: the client stops talking; Ferry closes it after
    # one and a half keep-alives and publishes the will.
    w = Client("py-slash-will", v5=False, keepalive=1, will=("/TopicA", b"gone", 1, False))
    w.c.loop_stop()
    m = sub.msgs.get(timeout=TIMEOUT)
    if m.topic != "/TopicA" or m.payload != b"gone":
        fail("will: got %r on %s" % (m.payload, m.topic))
    pub.close()
    sub.close()
    print("ok publish, subscribe and a will on /TopicA", flush=True)


def dollar_topics():
    watcher = Client("py-dollar-watch", v5=False)
    watcher.subscribe("#")
    watcher.subscribe("+/x")
    v5 = Client("py-dollar-v5")
    small = Client("py-dollar-small", max_packet=16)
    v311 = Client("py-dollar-v311", v5=False)
    for c in (v5, small, v311):
        for qos in (1, 2):
            # Refused (MQTT 5: PUBACK/PUBREC 0x90) or acknowledged and
            # dropped (3.1.1): either way the client reads its answer.
            c.publish("$app/x", b"no", qos=qos)
            c.publish("$SYS/x", b"no", qos=qos)
        if not c.c.is_connected():
            fail("disconnected after publishing to $ topics")
    v311.publish("app/x", b"yes")
    m = watcher.expect("app/x")
    if m.payload != b"yes":
        fail("got %r" % m.payload)
    watcher.expect_nothing(0.3)
    for c in (watcher, v5, small, v311):
        c.close()
    print("ok $-topic publishes answered and read, never matched by # or +/x", flush=True)


request_response()
expiry()
empty_first_level()
dollar_topics()
print("all passed", flush=True)
