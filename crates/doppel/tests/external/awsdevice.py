"""What the scripts beside this file share: a paho-mqtt 2.x client that behaves like AWS IoT
device firmware talking to its Device Shadow, with every wait bounded.

The scripts print what they receive as JSON lines on stdout, one document a line, so that the
Rust tests (crates/doppel/tests/mqtt_external.rs) can assert on them; failures go to stderr with
a non-zero exit code.
"""

import argparse
import json
import queue
import sys
import time

from jsonlines import EXIT_REFUSED, EXIT_TIMEOUT, fail

try:
    import paho.mqtt.client as mqtt
except ImportError:  # pragma: no cover - the message is the point
    sys.exit("paho-mqtt is not installed: run scripts/test (it installs 'paho-mqtt>=2')")

# Longest wait for any one thing (a CONNACK, a SUBACK, a response): AWS's own SDKs wait about
# this long, and a test must fail rather than hang.
WAIT_SECONDS = 10.0

def common_arguments(description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("thing", help="the AWS thing name; also the MQTT client id")
    parser.add_argument("--client-id", help="defaults to the thing name, as AWS firmware does")
    parser.add_argument("--shadow", help="a named shadow; the classic shadow when absent")
    parser.add_argument("--mqtt5", action="store_true", help="speak MQTT 5 instead of 3.1.1")
    parser.add_argument("--timeout", type=float, default=WAIT_SECONDS, help="seconds per wait")
    return parser


class ShadowDevice:
    """A connected device: its shadow's topic prefix, and a queue of what arrived."""

    def __init__(self, args):
        self.timeout = args.timeout
        self.thing = args.thing
        self.prefix = f"$aws/things/{args.thing}/shadow"
        if args.shadow:
            self.prefix += f"/name/{args.shadow}"
        protocol = mqtt.MQTTv5 if args.mqtt5 else mqtt.MQTTv311
        kwargs = {} if args.mqtt5 else {"clean_session": True}
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=args.client_id or args.thing,
            protocol=protocol,
            **kwargs,
        )
        self.mqtt5 = args.mqtt5
        self.events = queue.Queue()
        self.messages = queue.Queue()
        # Messages that arrived while the device waited for something else, oldest first.
        self.pending = []
        self.client.on_connect = lambda c, u, flags, reason, props: self.events.put(
            ("connack", reason)
        )
        self.client.on_subscribe = lambda c, u, mid, reasons, props: self.events.put(
            ("suback", (mid, reasons))
        )
        self.client.on_message = lambda c, u, message: self.messages.put(message)
        self.client.on_disconnect = lambda c, u, flags, reason, props: self.events.put(
            ("disconnected", reason)
        )
        self.host = args.host
        self.port = args.port

    def _arrivals(self, items, what):
        """What arrives on the queue `items`, oldest first, until the timeout runs out; then the
        script fails, saying it waited for `what`."""
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                fail(EXIT_TIMEOUT, f"timed out after {self.timeout}s waiting for {what}")
            try:
                item = items.get(timeout=left)
            except queue.Empty:
                continue
            yield item

    def _event(self, kind, what):
        for got, value in self._arrivals(self.events, what):
            if got == kind:
                return value
            if got == "disconnected":
                fail(EXIT_REFUSED, f"the broker closed the connection ({value}) while waiting for {what}")

    def connect(self):
        try:
            if self.mqtt5:
                self.client.connect(self.host, self.port, keepalive=30, clean_start=True)
            else:
                self.client.connect(self.host, self.port, keepalive=30)
        except OSError as err:
            fail(EXIT_REFUSED, f"cannot reach {self.host}:{self.port}: {err}")
        self.client.loop_start()
        reason = self._event("connack", "CONNACK")
        if reason.is_failure:
            fail(EXIT_REFUSED, f"the broker refused the connection: {reason}")

    def subscribe(self, *filters):
        """Subscribes at QoS 1 and waits for the SUBACK; every filter must be granted."""
        result, mid = self.client.subscribe([(f, 1) for f in filters])
        if result != mqtt.MQTT_ERR_SUCCESS:
            fail(EXIT_REFUSED, f"cannot send SUBSCRIBE: {mqtt.error_string(result)}")
        acked_mid, reasons = self._event("suback", f"SUBACK for {filters}")
        if acked_mid != mid:
            fail(EXIT_REFUSED, f"SUBACK for packet {acked_mid}, expected {mid}")
        refused = [(f, str(r)) for f, r in zip(filters, reasons) if r.is_failure]
        if refused:
            fail(EXIT_REFUSED, f"the broker refused subscriptions: {refused}")

    def subscribe_responses(self):
        """The shadow's response topics: `{op}/accepted`, `{op}/rejected`, and for update also
        `/update/delta` and `/update/documents`, as AWS's device SDKs subscribe."""
        self.subscribe(f"{self.prefix}/get/+", f"{self.prefix}/update/+", f"{self.prefix}/delete/+")

    def publish(self, topic, payload):
        """Publishes at QoS 1 and waits until the broker acknowledged it."""
        info = self.client.publish(topic, payload, qos=1)
        try:
            info.wait_for_publish(timeout=self.timeout)
        except (RuntimeError, ValueError) as err:
            fail(EXIT_REFUSED, f"cannot publish to {topic}: {err}")
        if not info.is_published():
            fail(EXIT_TIMEOUT, f"timed out after {self.timeout}s waiting for PUBACK on {topic}")

    def next_message(self, topics, what):
        """The oldest message on one of `topics`; others are kept for later calls."""
        for index, message in enumerate(self.pending):
            if message.topic in topics:
                return self.pending.pop(index)
        for message in self._arrivals(self.messages, f"{what} on {topics}"):
            if message.topic in topics:
                return message
            self.pending.append(message)

    def request(self, op, payload):
        """Publishes `payload` to `{prefix}/{op}` and returns AWS's answer as
        `{"topic", "outcome", "document"}`."""
        accepted = f"{self.prefix}/{op}/accepted"
        rejected = f"{self.prefix}/{op}/rejected"
        self.publish(f"{self.prefix}/{op}", payload)
        message = self.next_message((accepted, rejected), f"the answer to {op}")
        return {
            "topic": message.topic,
            "outcome": "accepted" if message.topic == accepted else "rejected",
            "document": decode(message),
        }

    def disconnect(self):
        self.client.disconnect()
        self.client.loop_stop()


def decode(message):
    try:
        return json.loads(message.payload)
    except ValueError:
        fail(1, f"{message.topic} carried a payload that is not JSON: {message.payload!r}")
