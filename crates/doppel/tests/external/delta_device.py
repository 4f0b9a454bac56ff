#!/usr/bin/env python3
"""A device that follows its desired state, as AWS IoT firmware does: it waits for deltas on
`/update/delta`, applies each one and reports it back as its new reported state.

    delta_device.py HOST PORT THING [--shadow NAME] [--mqtt5] [--count N]

It prints {"event": "ready"} once its subscriptions are acknowledged (so a caller can change the
desired state knowing the delta will reach it), then for each of N deltas two JSON lines:
{"topic": ".../update/delta", "document": {...}} and the answer to its report,
{"topic": ".../update/accepted"|".../update/rejected", "outcome": ..., "document": {...}}.

Exit codes: 0 after N deltas were received and reported, 2 on a timeout, 3 when the broker
refused the connection or a subscription.
"""

import json
import uuid

import awsdevice
from jsonlines import emit


def main():
    parser = awsdevice.common_arguments(__doc__.splitlines()[1])
    parser.add_argument("--count", type=int, default=1, help="deltas to follow before exiting")
    args = parser.parse_args()
    device = awsdevice.ShadowDevice(args)
    device.connect()
    device.subscribe_responses()
    emit({"event": "ready"})
    delta_topic = f"{device.prefix}/update/delta"
    for _ in range(args.count):
        message = device.next_message((delta_topic,), "a delta")
        delta = awsdevice.decode(message)
        emit({"topic": message.topic, "document": delta})
        # The firmware "applies" the change and reports what it now is.
        report = {
            "state": {"reported": delta["state"]},
            "clientToken": f"report-{uuid.uuid4().hex[:12]}",
        }
        emit(device.request("update", json.dumps(report)))
    device.disconnect()


if __name__ == "__main__":
    main()
