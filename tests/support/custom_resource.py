#!/usr/bin/env python3
"""Runs a CloudFormation custom resource's inline Lambda code (a template's
`Code.ZipFile`) the way Lambda and CloudFormation would, against the local
AWS server: the code is loaded as `index`, `handler(event, None)` is called
with the event given (its ResponseURL pointing at a local HTTP server that
plays CloudFormation's pre-signed S3 URL), and the response the handler
PUT there is printed as JSON. AWS_ENDPOINT_URL and credentials come from
the environment, as boto3 reads them."""
import argparse, http.server, importlib.util, json, sys, threading

parser = argparse.ArgumentParser()
parser.add_argument("--code", required=True)
parser.add_argument("--event", required=True)
args = parser.parse_args()
responses = []


class CloudFormation(http.server.BaseHTTPRequestHandler):
    def do_PUT(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        responses.append(json.loads(body))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), CloudFormation)
threading.Thread(target=server.serve_forever, daemon=True).start()
event = json.loads(args.event)
event["ResponseURL"] = f"http://127.0.0.1:{server.server_port}/response"
spec = importlib.util.spec_from_file_location("index", args.code)
index = importlib.util.module_from_spec(spec)
spec.loader.exec_module(index)
index.handler(event, None)
server.shutdown()
if len(responses) != 1:
    sys.exit(f"the handler answered CloudFormation {len(responses)} times")
print(json.dumps(responses[0]))
