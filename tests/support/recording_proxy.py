#!/usr/bin/env python3
"""A recording HTTP proxy for bucketscan's tests: the agent's
AWS_ENDPOINT_URL points here; every request is forwarded unchanged to the
local AWS server (--upstream) and logged to --log as one JSON line
(method, path, query, the x-amz-* headers and If-Match), so a test can
check what the agent asked S3 for — e.g. that an oversized object was never
downloaded, or that requests carry ExpectedBucketOwner."""
import argparse, http.client, http.server, json, threading, urllib.parse

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--upstream", required=True)  # host:port
parser.add_argument("--log", required=True)
args = parser.parse_args()
lock = threading.Lock()
HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def forward(self):
        length = int(self.headers.get("content-length", 0) or 0)
        body = self.rfile.read(length) if length else None
        url = urllib.parse.urlsplit(self.path)
        record = {
            "method": self.command,
            "path": urllib.parse.unquote(url.path),
            "query": url.query,
            "headers": {k.lower(): v for k, v in self.headers.items()
                        if k.lower().startswith("x-amz-") or k.lower() in ("if-match", "range")},
        }
        with lock, open(args.log, "a") as log:
            log.write(json.dumps(record) + "\n")
        upstream = http.client.HTTPConnection(args.upstream, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        self.send_response(response.status, response.reason)
        for k, v in response.getheaders():
            if k.lower() not in HOP and k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        upstream.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward

    def log_message(self, *_):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Proxy)
server.serve_forever()
