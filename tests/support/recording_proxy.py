#!/usr/bin/env python3
"""A recording, fault-injecting HTTP proxy for bucketscan's tests: the
agent's AWS_ENDPOINT_URL points here; every request is logged to --log as
one JSON line (method, path, query, the x-amz-* headers and If-Match) and
forwarded to the local AWS server (--upstream), so a test can check what
the agent asked for — e.g. that an oversized object was never downloaded.

Faults: --faults names a JSON file of rules, re-read whenever it changes,
so a test can start and stop failures while the agent runs. A rule matches
on any of `method`, `path` (substring of the decoded path), `query`
(substring), `no_query` (substring that must be absent), `body`
(substring of the request body, e.g. `Action=Publish`), `target` (the
X-Amz-Target header, e.g. `AmazonSQS.ReceiveMessage`) and `header` (a
[name, value] pair the request must carry, e.g. an x-amz-expected-bucket-owner
that S3 would refuse), and does one of:
  {"status": 403, "code": "AccessDenied", "message": "..."}  answer with an
      S3-style XML error (a bare status for HEAD), never forwarding;
  {"delay": 5}            wait, then forward;
  {"stall": 600}          hold the request without answering;
  {"reset": true}         close the connection without an answer.
`times` limits how often a rule fires (default: always); `every: N` fires
it on every Nth request it matches (a share of requests, deterministic).
Like real S3 (and unlike the local server), keys over 1024 bytes are
refused with KeyTooLongError."""
import argparse, http.client, http.server, json, os, socket, struct, threading, time, urllib.parse

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--upstream", required=True)  # host:port
parser.add_argument("--log", required=True)
parser.add_argument("--faults")
args = parser.parse_args()
lock = threading.Lock()
HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}
rules, rules_mtime, fired, matched = [], None, {}, {}


def current_rules():
    global rules, rules_mtime, fired, matched
    if not args.faults:
        return []
    try:
        mtime = os.stat(args.faults).st_mtime_ns
    except FileNotFoundError:
        return []
    if mtime != rules_mtime:
        with open(args.faults) as f:
            text = f.read()
        rules, rules_mtime, fired, matched = (json.loads(text) if text.strip() else []), mtime, {}, {}
    return rules


def matching_rule(method, path, query, body, headers):
    with lock:
        for index, rule in enumerate(current_rules()):
            if rule.get("method") not in (None, method):
                continue
            if "path" in rule and rule["path"] not in path:
                continue
            if "query" in rule and rule["query"] not in query:
                continue
            if "no_query" in rule and rule["no_query"] in query:
                continue
            if "body" in rule and rule["body"].encode() not in (body or b""):
                continue
            if "target" in rule and rule["target"] != headers.get("x-amz-target", ""):
                continue
            if "header" in rule and headers.get(rule["header"][0]) != rule["header"][1]:
                continue
            if "times" in rule and fired.get(index, 0) >= rule["times"]:
                continue
            matched[index] = matched.get(index, 0) + 1
            if matched[index] % rule.get("every", 1) != 0:
                continue
            fired[index] = fired.get(index, 0) + 1
            return rule
    return None


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def forward(self):
        length = int(self.headers.get("content-length", 0) or 0)
        body = self.rfile.read(length) if length else None
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        record = {
            "method": self.command,
            "path": path,
            "query": url.query,
            "length": length,
            "headers": {k.lower(): v for k, v in self.headers.items()
                        if k.lower().startswith("x-amz-") or k.lower() in ("if-match", "range")},
        }
        lower = {k.lower(): v for k, v in self.headers.items()}
        rule = matching_rule(self.command, path, url.query, body, lower)
        if rule:
            record["fault"] = {k: v for k, v in rule.items() if k not in ("message",)}
        with lock, open(args.log, "a") as log:
            log.write(json.dumps(record) + "\n")
        if rule and self.inject(rule):
            return
        if self.key_too_long(path):
            return
        upstream = http.client.HTTPConnection(args.upstream, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        self.send_response(response.status, response.reason)
        for k, v in response.getheaders():
            if k.lower() not in HOP and k.lower() != "content-length":
                self.send_header(k, v)
        # A HEAD answers with the object's length, not its empty body's.
        length = response.getheader("content-length") if self.command == "HEAD" else None
        self.send_header("content-length", length or str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        upstream.close()

    def key_too_long(self, path):
        """Real S3 refuses keys over 1024 bytes (the local server does not):
        answered here the way S3 answers, so long keys fail as they would."""
        parts = path.lstrip("/").split("/", 1)
        if len(parts) < 2 or len(parts[1].encode()) <= 1024:
            return False
        self.inject({"status": 400, "code": "KeyTooLongError", "message": "Your key is too long"})
        return True

    def inject(self, rule):
        """Carries out `rule`; True when the request was answered (or
        dropped) here, False to forward it after all (a delay)."""
        if "delay" in rule:
            time.sleep(rule["delay"])
            return False
        if "stall" in rule:
            time.sleep(rule["stall"])
            self.close_connection = True
            return True
        if rule.get("reset"):
            # SO_LINGER 0: the close sends a TCP reset.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return True
        status = rule.get("status", 500)
        payload = b""
        if self.command != "HEAD" and rule.get("code"):
            payload = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>%s</Code><Message>%s</Message>"
                       "<RequestId>injected</RequestId></Error>" % (rule["code"], rule.get("message", ""))).encode()
        self.send_response(status)
        self.send_header("content-type", "application/xml")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        return True

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward

    def log_message(self, *_):
        pass


class Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # a client that hung up (a test stopping an agent): not news


server = Server(("127.0.0.1", args.port), Proxy)
server.daemon_threads = True
server.serve_forever()
