#!/usr/bin/env python3
"""A webhook receiver for bucketscan's tests, written apart from the Rust
code so the signature is checked by an independent implementation.

Each POST is appended to LOG as one JSON line: path, headers, body, and
whether the signature was valid (HMAC-SHA256 of "TIMESTAMP.BODY" under the
secret in the environment variable SECRET_ENV). It answers 401 to a bad
signature, 503 to the first --fail-first requests, sleeps --delay-ms before
answering, answers --redirect-to with a 302, and with --endless answers 200
with a body that never ends (logging how much it sent when the client hung
up).
"""
import argparse, hashlib, hmac, http.server, json, os, sys, time

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--log", required=True)
parser.add_argument("--secret-env")
parser.add_argument("--fail-first", type=int, default=0)
parser.add_argument("--delay-ms", type=int, default=0)
parser.add_argument("--redirect-to")
parser.add_argument("--endless", action="store_true")
args = parser.parse_args()
secret = os.environ[args.secret_env].encode() if args.secret_env else None
seen = 0


def signature_ok(headers, body):
    if secret is None:
        return None
    timestamp = headers.get("x-bucketscan-timestamp", "")
    given = headers.get("x-bucketscan-signature", "")
    expected = "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) < 300
    return fresh and hmac.compare_digest(given, expected)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        global seen
        seen += 1
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        valid = signature_ok(self.headers, body)
        with open(args.log, "a") as log:
            log.write(json.dumps({
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("utf-8", "replace"),
                "signature_valid": valid,
            }) + "\n")
        time.sleep(args.delay_ms / 1000)
        if args.redirect_to:
            status = 302
        elif valid is False:
            status = 401
        elif seen <= args.fail_first:
            status = 503
        else:
            status = 200
        if args.endless:
            self.stream_forever()
            return
        self.send_response(status)
        if args.redirect_to:
            self.send_header("location", args.redirect_to)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def stream_forever(self):
        self.send_response(200)
        self.end_headers()
        chunk = b"x" * (1 << 20)
        sent = 0
        try:
            while sent < (8 << 30):
                self.wfile.write(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        with open(args.log, "a") as log:
            log.write(json.dumps({"endless_sent": sent}) + "\n")

    def log_message(self, *_):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
print("ready", flush=True)
server.serve_forever()
