"""The alerts benchmark's driver (bench/alerts.sh starts the service and runs this).

    python3 bench/alerts.py passes BASE LOG          # 50 rules, then the time of each pass
    python3 bench/alerts.py filtered BASE LOG        # the same with a rule on one sender
    python3 bench/alerts.py latency BASE INTERVAL    # failure bursts to notification

`passes` puts 50 rules (no channel: only the evaluation is timed), waits for 30 passes
after that and prints their times, read from the service's own log line
("alert rules evaluated", took_ms: the evaluation and the write of the state that follows
it; RUST_LOG=statushook::jobs::alerts=debug). `filtered` adds a 51st rule filtered by
sender, which no counter answers: it reads its window's messages.

`latency` starts a receiver, and five times: puts a rule on an error code of its own
(failures >= 20 in 5m), waits for a pass to end, posts 20 signed callbacks failing with
that code, and measures from the last callback's 200 to the webhook's arrival: the next
pass comes up to an interval later, so this is the worst case.
"""

import base64
import hashlib
import hmac
import json
import statistics
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "bench-api-token-0123456789abcdef0123"
AUTH_TOKEN = "bench-auth-token"
PUBLIC_URL = "https://hooks.example.com"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def api(base, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Authorization", "Bearer " + TOKEN)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request) as response:
        text = response.read()
        return json.loads(text) if text else None


def rules():
    """50 rules as a team might have them: rates, counts and silences over the usual
    windows, some on one error code."""
    windows = ["1m", "5m", "15m", "1h", "6h", "24h"]
    out = {}
    for i in range(20):
        out[f"rate-{i}"] = {"metric": "failure_rate", "threshold": 0.05 + i / 100,
                            "resolve_below": 0.04, "window": windows[i % 6],
                            "min_messages": 50, "notify": []}
    for i in range(15):
        out[f"failures-{i}"] = {"metric": "failures", "threshold": 10_000_000 + i,
                                "window": windows[i % 6], "notify": []}
        if i % 3 == 0:
            out[f"failures-{i}"]["filter"] = {"error_code": 30003}
    for i in range(10):
        out[f"silence-{i}"] = {"metric": "silence", "threshold": 10_000_000 + i,
                               "window": windows[(i + 1) % 6], "notify": []}
    for i in range(5):
        out[f"code-{i}"] = {"metric": "failure_rate", "threshold": 0.5, "window": windows[i % 6],
                            "filter": {"error_code": 30005 + i}, "notify": []}
    return out


def passes(base, log_path, extra=None):
    with open(log_path) as log:
        log.seek(0, 2)
        put = rules()
        put.update(extra or {})
        for name, rule in put.items():
            api(base, "PUT", f"/v1/alerts/rules/{name}", rule)
        took = []
        skipped_first = False
        while len(took) < 30:
            line = log.readline()
            if not line:
                time.sleep(0.05)
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("message") != "alert rules evaluated" or entry.get("rules") != len(put):
                continue
            if not skipped_first:  # it may have begun before the last rule was put
                skipped_first = True
                continue
            took.append(float(entry["took_ms"]))
    took.sort()
    print(f"evaluation of {len(put)} rules, 30 passes: median {statistics.median(took):.1f} ms, "
          f"p90 {took[26]:.1f} ms, max {took[-1]:.1f} ms")


arrivals = {}


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        at = time.time()
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        arrivals.setdefault(body["data"]["rule"], at)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def sign(params):
    data = PUBLIC_URL + "/twilio/status" + "".join(k + v for k, v in sorted(params))
    digest = hmac.new(AUTH_TOKEN.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def failed_callback(base, code):
    sid = "SM" + uuid.uuid4().hex
    params = [("MessageSid", sid), ("MessageStatus", "failed"), ("ErrorCode", str(code)),
              ("AccountSid", "AC" + "0" * 32), ("From", "+15005550006"),
              ("To", "+15005550009"), ("ApiVersion", "2010-04-01")]
    request = urllib.request.Request(base + "/twilio/status",
                                     data=urllib.parse.urlencode(params).encode(), method="POST")
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    request.add_header("X-Twilio-Signature", sign(params))
    with urllib.request.urlopen(request) as response:
        assert response.status == 200


def latency(base, interval):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    # The 50 rules of `passes`, without `filtered`'s slow one.
    try:
        api(base, "DELETE", "/v1/alerts/rules/one-sender")
    except urllib.error.HTTPError:
        pass
    took = []
    for i in range(5):
        name, code = f"burst-{uuid.uuid4().hex[:8]}", 39000 + i
        api(base, "PUT", f"/v1/alerts/rules/{name}",
            {"metric": "failures", "threshold": 20, "window": "5m", "filter": {"error_code": code},
             "notify": [{"type": "webhook", "url": url, "secret": SECRET}]})
        evaluated = api(base, "GET", "/v1/alerts")["evaluated_at"]
        while api(base, "GET", "/v1/alerts")["evaluated_at"] == evaluated:
            time.sleep(0.05)
        for _ in range(20):
            failed_callback(base, code)
        burst = time.time()
        while name not in arrivals:
            time.sleep(0.005)
        took.append(arrivals[name] - burst)
        api(base, "DELETE", f"/v1/alerts/rules/{name}")
    print(f"failure burst to notification, interval {interval}, 5 bursts: "
          + ", ".join(f"{t:.2f}" for t in took) + f" s (max {max(took):.2f} s)")
    server.shutdown()


if __name__ == "__main__":
    if sys.argv[1] == "passes":
        passes(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "filtered":
        # examples/fill sends from 20 numbers: this one sent a twentieth of the messages.
        passes(sys.argv[2], sys.argv[3], {"one-sender": {
            "metric": "failure_rate", "threshold": 0.5, "window": "1h",
            "filter": {"from": "+15005550007"}, "notify": []}})
    else:
        latency(sys.argv[2], sys.argv[3])
