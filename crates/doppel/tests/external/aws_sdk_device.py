#!/usr/bin/env python3
"""Device firmware written against the AWS IoT Device SDK v2 for Python (`awsiotsdk`, on top of
`awscrt`), used as AWS's own samples use it: a plain-TCP MQTT connection and the SDK's typed
shadow client. Nothing here reads a payload itself: every line printed is what the SDK parsed.

    aws_sdk_device.py HOST PORT THING SCENARIO [--username U --password P] [--shadow NAME]
                      [--mqtt5] [--v2] [--disable-metrics] [--count N] [--timeout SECONDS]

The thing name is also the MQTT client id, as AWS firmware does it.

Connections: `awscrt.mqtt.Connection` (MQTT 3.1.1), or `awscrt.mqtt5.Client` with `--mqtt5`.
Shadow clients: `awsiot.iotshadow.IotShadowClient` (publish/subscribe with callbacks), or with
`--v2` the request-response `IotShadowClientV2`, which correlates answers by clientToken and
therefore replaces the client token of each request with a UUID of its own.
The SDK appends its metrics (`?SDK=...&Platform=...`) to the MQTT username unless told not to
(`--disable-metrics`); unchanged firmware sends them.

Scenarios, on the classic shadow or on `--shadow NAME`:
  connect            connect and disconnect cleanly
  update-get-delete  update reported and desired with a client token (and the documents event
                     it causes), get, delete, get again (rejected: 404)
  conflict           update; update at the current version; update at a stale version (409)
  clear              update; remove a reported key (null) and the whole desired section; get
  delta              print {"step": "ready"} once subscribed, then for each of --count deltas
                     the event and the answer to reporting its state back
  named              update and get on the named shadow of --shadow (required)

Each line is one thing the SDK handed to the program, as JSON: {"step", "outcome" (accepted,
rejected or event), "type" (the SDK's class), "parsed" (its fields; datetimes as Unix seconds)},
and for requests "sent_token", the client token the request carried.

Exit codes: 0 when the scenario ran to its end, 2 on a timeout (each wait is bounded by
--timeout), 3 when the broker refused the connection or a subscription, 4 when the SDK could not
parse what the broker sent (a compatibility bug; the raw payload is printed on stderr).
"""

import argparse
import concurrent.futures
import datetime
import gc
import queue
import sys
import threading

from jsonlines import EXIT_REFUSED, EXIT_TIMEOUT, emit, fail

try:
    import awsiot
    from awscrt import exceptions, io, mqtt, mqtt5, mqtt_request_response
    from awsiot import iotshadow
except ImportError as missing:  # pragma: no cover - the message is the point
    sys.exit(f"the AWS IoT Device SDK is not installed ({missing}): run scripts/test")

# Longest wait for any one thing (a CONNACK, a SUBACK, an answer, an event): a test must fail
# rather than hang.
WAIT_SECONDS = 10.0

# Beside EXIT_TIMEOUT and EXIT_REFUSED (from jsonlines): the SDK could not parse a payload.
EXIT_UNPARSED = 4

QOS = mqtt.QoS.AT_LEAST_ONCE
OPS = ("get", "update", "delete")


def parsed(value):
    """What the SDK parsed, as JSON: a modeled object's fields that are set, datetimes as Unix
    seconds (the SDK makes them with `datetime.fromtimestamp`)."""
    if isinstance(value, awsiot.ModeledClass):
        fields = ((slot, getattr(value, slot)) for slot in value.__slots__)
        return {slot: parsed(field) for slot, field in fields if field is not None}
    if isinstance(value, datetime.datetime):
        return int(value.timestamp())
    if isinstance(value, dict):
        return {key: parsed(field) for key, field in value.items()}
    if isinstance(value, list):
        return [parsed(field) for field in value]
    return value


def outcome_line(step, outcome, value, sent_token=None):
    line = {"step": step, "outcome": outcome, "type": type(value).__name__, "parsed": parsed(value)}
    if sent_token is not None:
        line["sent_token"] = sent_token
    return line


class Timeout:
    """Bounded waits, each with its own description for the failure message."""

    def __init__(self, seconds):
        self.seconds = seconds

    def result(self, future, what):
        try:
            return future.result(self.seconds)
        except concurrent.futures.TimeoutError:
            fail(EXIT_TIMEOUT, f"timed out after {self.seconds}s waiting for {what}")

    def take(self, items, what):
        try:
            return items.get(timeout=self.seconds)
        except queue.Empty:
            fail(EXIT_TIMEOUT, f"timed out after {self.seconds}s waiting for {what}")


class RawPayloads:
    """The last payload seen on each topic, recorded beside the SDK (which hides the payloads it
    cannot parse) so that a parse failure can say exactly what the broker sent."""

    def __init__(self):
        self.lock = threading.Lock()
        self.last = {}

    def record(self, topic, payload):
        with self.lock:
            self.last[topic] = bytes(payload)

    def unparsed(self, topic, what):
        with self.lock:
            payload = self.last.get(topic, b"(not seen)")
        payload = payload.decode(errors="replace")
        fail(EXIT_UNPARSED, f"the SDK could not parse {what} on {topic}: {payload}")


class Mqtt3:
    """An `awscrt.mqtt.Connection` speaking MQTT 3.1.1 over plain TCP."""

    def __init__(self, args, raw, timeout):
        self.timeout = timeout
        bootstrap = io.ClientBootstrap.get_or_create_static_default()
        self.client = mqtt.Connection(
            client=mqtt.Client(bootstrap, None),  # no TLS context: plain TCP
            host_name=args.host,
            port=args.port,
            client_id=args.thing,
            clean_session=True,
            keep_alive_secs=30,
            username=args.username,
            password=args.password,
            disable_metrics=args.disable_metrics,
        )
        self.client.on_message(lambda topic, payload, **_: raw.record(topic, payload))

    def connect(self):
        try:
            return self.timeout.result(self.client.connect(), "CONNACK")["session_present"]
        except Exception as err:  # the CRT's error or the CONNACK's return code
            fail(EXIT_REFUSED, f"the connection failed: {err!r}")

    def disconnect(self):
        self.timeout.result(self.client.disconnect(), "the disconnection")


class Mqtt5:
    """An `awscrt.mqtt5.Client` over plain TCP, told to stop retrying when a connection fails."""

    def __init__(self, args, raw, timeout):
        self.timeout = timeout
        self.lifecycle = queue.Queue()
        self.client = mqtt5.Client(
            mqtt5.ClientOptions(
                host_name=args.host,
                port=args.port,
                connect_options=mqtt5.ConnectPacket(
                    client_id=args.thing,
                    keep_alive_interval_sec=30,
                    username=args.username,
                    password=args.password,
                ),
                session_behavior=mqtt5.ClientSessionBehaviorType.CLEAN,
                on_publish_callback_fn=lambda data: raw.record(
                    data.publish_packet.topic, data.publish_packet.payload
                ),
                on_lifecycle_event_connection_success_fn=lambda data: self.lifecycle.put(
                    ("connected", data.connack_packet)
                ),
                on_lifecycle_event_connection_failure_fn=lambda data: self.lifecycle.put(
                    ("failed", data)
                ),
                on_lifecycle_event_stopped_fn=lambda data: self.lifecycle.put(("stopped", data)),
                disable_metrics=args.disable_metrics,
            )
        )

    def connect(self):
        self.client.start()
        event, data = self.timeout.take(self.lifecycle, "CONNACK")
        if event != "connected":
            self.client.stop()
            reason = data.connack_packet.reason_code if data.connack_packet else None
            fail(EXIT_REFUSED, f"the connection failed: {data.exception!r}, CONNACK {reason!r}")
        return data.session_present

    def disconnect(self):
        self.client.stop()
        while self.timeout.take(self.lifecycle, "the disconnection")[0] != "stopped":
            pass


class Shadow:
    """What both of the SDK's shadow clients share: requests and subscriptions built with the
    SDK's classes for the classic or the named shadow. The SDK names its generated classes and
    methods after the operation and `shadow` or `named_shadow` (`Named` in class names), which
    `kind` and `model` fill in."""

    def __init__(self, args, raw, timeout):
        self.thing = args.thing
        self.shadow = args.shadow
        self.raw = raw
        self.timeout = timeout
        self.kind = "named_shadow" if args.shadow else "shadow"
        self.prefix = f"$aws/things/{args.thing}/shadow"
        if args.shadow:
            self.prefix += f"/name/{args.shadow}"

    def model(self, template, **fields):
        """An instance of the SDK class `template.format(Named="Named" or "")` for this shadow."""
        cls = getattr(iotshadow, template.format(Named="Named" if self.shadow else ""))
        if self.shadow:
            fields["shadow_name"] = self.shadow
        return cls(thing_name=self.thing, **fields)

    def events(self, events):
        """For `delta` or `documents` events: the SDK's subscription request, the fragment its
        method names share, and the topic."""
        fragment = "delta_updated" if events == "delta" else "updated"
        template = "{Named}Shadow" + ("DeltaUpdated" if events == "delta" else "Updated")
        request = self.model(template + "SubscriptionRequest")
        return request, fragment, f"{self.prefix}/update/{events}"

    def update(self, step, client_token, version=None, **state):
        """`state` holds ShadowState's keywords: desired, reported, desired_is_nullable, ..."""
        request = self.model(
            "Update{Named}ShadowRequest",
            state=iotshadow.ShadowState(**state),
            client_token=client_token,
            version=version,
        )
        return self.request("update", step, request)

    def get(self, step, client_token):
        request = self.model("Get{Named}ShadowRequest", client_token=client_token)
        return self.request("get", step, request)

    def delete(self, step, client_token):
        request = self.model("Delete{Named}ShadowRequest", client_token=client_token)
        return self.request("delete", step, request)


class PubSubShadow(Shadow):
    """`IotShadowClient`: the device subscribes to each answer topic with a callback, then
    publishes requests; the SDK hands each callback the parsed document, or None when it could
    not parse it."""

    def __init__(self, connection, args, raw, timeout):
        super().__init__(args, raw, timeout)
        self.client = iotshadow.IotShadowClient(connection.client)
        self.answers = {op: queue.Queue() for op in OPS}

    def subscribe(self, method, request, callback):
        future, topic = getattr(self.client, method)(request, QOS, callback)
        try:
            self.timeout.result(future, f"SUBACK for {topic}")
        except Exception as err:  # SubscribeError: the broker refused
            fail(EXIT_REFUSED, f"the subscription to {topic} failed: {err!r}")

    def subscribe_answers(self):
        for op in OPS:
            request = self.model(op.capitalize() + "{Named}ShadowSubscriptionRequest")
            for outcome in ("accepted", "rejected"):
                topic = f"{self.prefix}/{op}/{outcome}"

                def callback(value, op=op, outcome=outcome, topic=topic):
                    self.answers[op].put((outcome, value, topic))

                self.subscribe(f"subscribe_to_{op}_{self.kind}_{outcome}", request, callback)

    def request(self, op, step, request):
        publish = getattr(self.client, f"publish_{op}_{self.kind}")
        self.timeout.result(publish(request, QOS), f"PUBACK of {op}")
        outcome, value, topic = self.timeout.take(self.answers[op], f"the answer to {op}")
        if value is None:
            self.raw.unparsed(topic, f"the answer to {op}")
        return outcome_line(step, outcome, value, request.client_token)

    def open_stream(self, events):
        """Subscribes to `delta` or `documents` events; returns the queue they arrive on (the
        topic stands in for an event the SDK could not parse)."""
        arrived = queue.Queue()
        request, fragment, topic = self.events(events)
        self.subscribe(
            f"subscribe_to_{self.kind}_{fragment}_events",
            request,
            lambda value: arrived.put(value if value is not None else topic),
        )
        return arrived

    def next_event(self, stream, step):
        value = self.timeout.take(stream, f"a {step} event")
        if isinstance(value, str):
            self.raw.unparsed(value, f"a {step} event")
        return outcome_line(step, "event", value)


class RequestResponseShadow(Shadow):
    """`IotShadowClientV2`: each request is one future, which the SDK completes with the parsed
    accepted document or fails with the parsed rejection; events come on streams."""

    def __init__(self, connection, args, raw, timeout):
        super().__init__(args, raw, timeout)
        options = mqtt_request_response.ClientOptions(
            max_request_response_subscriptions=3,
            max_streaming_subscriptions=2,
            operation_timeout_in_seconds=int(timeout.seconds),
        )
        self.client = iotshadow.IotShadowClientV2(connection.client, options)
        # Keeps the streams referenced: a collected stream is closed.
        self.streams = []

    def subscribe_answers(self):
        """The request-response client subscribes to the answer topics by itself."""

    def request(self, op, step, request):
        future = getattr(self.client, f"{op}_{self.kind}")(request)
        try:
            response = self.timeout.result(future, f"the answer to {op}")
            return outcome_line(step, "accepted", response, request.client_token)
        except awsiot.V2ServiceException as err:
            if err.modeled_error is not None:
                return outcome_line(step, "rejected", err.modeled_error, request.client_token)
            inner = err.inner_error
            if isinstance(inner, exceptions.AwsCrtError):
                fail(EXIT_TIMEOUT if "TIMEOUT" in inner.name else 1, f"{op} failed: {inner!r}")
            fail(EXIT_UNPARSED, f"the SDK could not parse the answer to {op}: {inner!r}")

    def open_stream(self, events):
        """Opens a stream of `delta` or `documents` events and waits until it is subscribed;
        returns the queue its events (or the SDK's parse failures) arrive on."""
        arrived = queue.Queue()
        status = queue.Queue()
        request, fragment, topic = self.events(events)
        stream = getattr(self.client, f"create_{self.kind}_{fragment}_stream")(
            request,
            awsiot.ServiceStreamOptions(
                incoming_event_listener=arrived.put,
                subscription_status_listener=status.put,
                deserialization_failure_listener=arrived.put,
            ),
        )
        stream.open()
        self.streams.append(stream)
        event = self.timeout.take(status, f"the subscription to {topic}")
        established = mqtt_request_response.SubscriptionStatusEventType.SUBSCRIPTION_ESTABLISHED
        if event.type != established:
            fail(EXIT_REFUSED, f"subscribing to {topic} failed: {event.type!r} {event.error!r}")
        return arrived

    def next_event(self, stream, step):
        value = self.timeout.take(stream, f"a {step} event")
        if isinstance(value, awsiot.V2DeserializationFailure):
            fail(
                EXIT_UNPARSED,
                f"the SDK could not parse a {step} event: {value.inner_error!r}: {value.payload!r}",
            )
        return outcome_line(step, "event", value)


def update_get_delete(shadow, args):
    documents = shadow.open_stream("documents")
    emit(
        shadow.update(
            "update",
            "sdk-update-1",
            reported={"temp": 21.5, "fan": {"speed": 2}},
            desired={"temp": 22},
        )
    )
    emit(shadow.next_event(documents, "documents"))
    emit(shadow.get("get", "sdk-get-1"))
    emit(shadow.delete("delete", "sdk-delete-1"))
    emit(shadow.get("get-deleted", "sdk-get-2"))


def conflict(shadow, args):
    first = shadow.update("update", "sdk-conflict-1", reported={"mode": "off"})
    emit(first)
    version = first["parsed"].get("version")
    emit(shadow.update("update-current", "sdk-conflict-2", version=version, reported={"level": 1}))
    emit(shadow.update("update-stale", "sdk-conflict-3", version=version, reported={"mode": "eco"}))


def clear(shadow, args):
    emit(
        shadow.update(
            "update",
            "sdk-clear-1",
            desired={"mode": "eco", "level": 3},
            reported={"mode": "off", "level": 3},
        )
    )
    # ShadowState sends `"desired": null` only when told that None is meant.
    emit(
        shadow.update(
            "clear",
            "sdk-clear-2",
            desired=None,
            desired_is_nullable=True,
            reported={"level": None},
        )
    )
    emit(shadow.get("get", "sdk-clear-3"))


def delta(shadow, args):
    deltas = shadow.open_stream("delta")
    emit({"step": "ready"})
    for number in range(1, args.count + 1):
        event = shadow.next_event(deltas, "delta")
        emit(event)
        # The firmware "applies" the change and reports what it now is.
        emit(shadow.update("report", f"sdk-report-{number}", reported=event["parsed"].get("state")))


def named(shadow, args):
    if not args.shadow:
        fail(1, "the named scenario needs --shadow NAME")
    emit(
        shadow.update(
            "update",
            "sdk-named-1",
            reported={"interval": 30},
            desired={"interval": 60},
        )
    )
    emit(shadow.get("get", "sdk-named-2"))


SCENARIOS = {
    "connect": None,
    "update-get-delete": update_get_delete,
    "conflict": conflict,
    "clear": clear,
    "delta": delta,
    "named": named,
}


def arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("thing", help="the AWS thing name; also the MQTT client id")
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument("--shadow", help="a named shadow; the classic shadow when absent")
    parser.add_argument("--mqtt5", action="store_true", help="awscrt.mqtt5.Client, not 3.1.1")
    parser.add_argument("--v2", action="store_true", help="IotShadowClientV2 (request-response)")
    parser.add_argument(
        "--disable-metrics", action="store_true", help="no SDK metrics in the MQTT username"
    )
    parser.add_argument("--count", type=int, default=1, help="deltas to follow (delta scenario)")
    parser.add_argument("--timeout", type=float, default=WAIT_SECONDS, help="seconds per wait")
    return parser.parse_args()


def run_scenario(scenario, connection, args, raw, timeout):
    """Runs `scenario` with a shadow client that lives only as long as this call."""
    client = RequestResponseShadow if args.v2 else PubSubShadow
    shadow = client(connection, args, raw, timeout)
    shadow.subscribe_answers()
    scenario(shadow, args)


def main():
    args = arguments()
    timeout = Timeout(args.timeout)
    raw = RawPayloads()
    connection = (Mqtt5 if args.mqtt5 else Mqtt3)(args, raw, timeout)
    session_present = connection.connect()
    emit({"step": "connect", "outcome": "connected", "session_present": session_present})
    scenario = SCENARIOS[args.scenario]
    if scenario is not None:
        run_scenario(scenario, connection, args, raw, timeout)
        # The shadow client (and its callbacks' reference cycles) must be gone before its
        # connection: awscrt's request-response client left for the interpreter's exit to
        # release after an MQTT 3.1.1 connection corrupts the heap about every third run
        # (awscrt 0.36.1: "malloc_consolidate(): unaligned fastbin chunk detected", SIGABRT).
        gc.collect()
    connection.disconnect()


if __name__ == "__main__":
    main()
