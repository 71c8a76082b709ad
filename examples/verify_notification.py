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

A marked message can still be replayed (its body names the bucket, key,
version and ETag it is about): act on exactly that version or ETag (copy
with `CopySourceVersionId` or `CopySourceIfMatch`), never on "whatever the
key holds now". Every subscriber holding the key could also mark; give it
only to subscribers you trust as much as the agents' results.

Run as a script, it reads SNS envelopes (one JSON per line, as an SQS
subscription delivers them) on stdin and prints `ok` or `FORGED` for each.
"""
import hashlib
import hmac
import json
import sys


def is_from_bucketscan(envelope: dict, key_hex: str) -> bool:
    """`envelope`: the SNS notification (Type, Message, MessageAttributes).

    The mark covers the message body; the attributes a filter policy
    routes on (`scan-result`, `bucket`, `outcome`) are checked against the
    body, so a marked "infected" body cannot be re-sent as "clean"."""
    attributes = envelope.get("MessageAttributes", {})
    mark = attributes.get("bucketscan-mark", {}).get("Value", "")
    if not mark.startswith("n1-"):
        return False
    expected = hmac.new(bytes.fromhex(key_hex), envelope["Message"].encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(mark[3:], expected):
        return False
    body = json.loads(envelope["Message"])
    claimed = {
        "scan-result": body.get("result"),
        "bucket": body.get("bucket"),
        "outcome": (body.get("outcome") or {}).get("status"),
    }
    return all(attributes.get(name, {}).get("Value") == value for name, value in claimed.items())


if __name__ == "__main__":
    key = sys.argv[1]
    for line in sys.stdin:
        if line.strip():
            print("ok" if is_from_bucketscan(json.loads(line), key) else "FORGED")
