#!/usr/bin/env python3
"""The ECS container credentials endpoint, as Fargate serves it at
AWS_CONTAINER_CREDENTIALS_FULL_URI: answers temporary credentials to
requests carrying the right Authorization token, and logs every request."""
import datetime, http.server, json, sys

port, token, log_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        authorized = self.headers.get("Authorization") == token
        with open(log_path, "a") as log:
            log.write(json.dumps({"path": self.path, "authorized": authorized}) + "\n")
        if not authorized:
            self.send_response(403)
            self.end_headers()
            return
        expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
        body = json.dumps({
            "AccessKeyId": "ASIATESTFARGATETASK",
            "SecretAccessKey": "fargate-task-secret",
            "Token": "fargate-task-session-token",
            "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "RoleArn": "arn:aws:iam::123456789012:role/bucketscan-task",
        }).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
