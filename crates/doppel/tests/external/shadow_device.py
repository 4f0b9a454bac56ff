#!/usr/bin/env python3
"""A device that sends shadow requests one after another, as AWS IoT firmware does, and prints
each answer as a JSON line: {"topic": ..., "outcome": "accepted"|"rejected", "document": {...}}.

    shadow_device.py HOST PORT THING [--shadow NAME] [--mqtt5] STEP...

Each STEP is OP or OP=PAYLOAD with OP one of get, update, delete; PAYLOAD is sent verbatim (it
need not be JSON, so that the hub's rejections can be tested). The device subscribes to its
shadow's response topics before the first request, and waits for each answer before the next
request. With no STEP it only connects and disconnects cleanly.

Exit codes: 0 when every request was answered (accepted or rejected), 2 on a timeout, 3 when the
broker refused the connection or a subscription.
"""

import awsdevice
from jsonlines import emit

OPS = ("get", "update", "delete")


def parse_step(step):
    op, _, payload = step.partition("=")
    if op not in OPS:
        raise SystemExit(f"unknown step {step!r}: expected one of {OPS}, optionally with =PAYLOAD")
    return op, payload


def main():
    parser = awsdevice.common_arguments(__doc__.splitlines()[1])
    parser.add_argument("steps", nargs="*", metavar="STEP")
    args = parser.parse_intermixed_args()
    steps = [parse_step(step) for step in args.steps]
    device = awsdevice.ShadowDevice(args)
    device.connect()
    if steps:
        device.subscribe_responses()
    for op, payload in steps:
        emit(device.request(op, payload))
    device.disconnect()


if __name__ == "__main__":
    main()
