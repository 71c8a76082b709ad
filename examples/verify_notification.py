#!/usr/bin/env python3
"""Checks that a result notification came from bucketscan's agents.

Every message the agents publish to the result topic carries a message
attribute `bucketscan-mark`: `n1-` and the hex HMAC-SHA256 of the message
body under the notification key (`bucketscan notification-key --config
bucketscan.toml` prints it; it is derived from the agents' seal key and
cannot seal result tags). Anyone who may publish to the topic can write
"clean"; nobody without the key can mark it.

Use it in a subscriber (a Lambda behind the SNS subscription, an SQS
consumer) before acting on a result:

    if not is_from_bucketscan(envelope, key): drop it

Run as a script, it reads SNS envelopes (one JSON per line, as an SQS
subscription delivers them) on stdin and prints `ok` or `FORGED` for each.
"""
import hashlib
import hmac
import json
import sys


def is_from_bucketscan(envelope: dict, key_hex: str) -> bool:
    """`envelope`: the SNS notification (Type, Message, MessageAttributes)."""
    attribute = envelope.get("MessageAttributes", {}).get("bucketscan-mark", {})
    mark = attribute.get("Value", "")
    if not mark.startswith("n1-"):
        return False
    expected = hmac.new(bytes.fromhex(key_hex), envelope["Message"].encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(mark[3:], expected)


if __name__ == "__main__":
    key = sys.argv[1]
    for line in sys.stdin:
        if line.strip():
            print("ok" if is_from_bucketscan(json.loads(line), key) else "FORGED")
