"""A webhook receiver for the forwarding tests: verifies every delivery with the official
`standardwebhooks` package and reports it on stdout, one JSON line each.

    python3 receiver.py whsec_...

First line out: {"port": N}. Commands, one a line on stdin, each acknowledged with
{"ok": "<command>"} once in force:
    down                 stop listening (connections are refused)
    up                   listen again on the same port
    fail N               answer 500 to the next N verified deliveries
    fail-status S N      answer 500 to the next N verified deliveries of event status S
    delay MS             wait MS milliseconds before each answer
Each delivery: {"id", "timestamp", "answer", "body", "path", "arrived", "in_flight"} once
verified ("arrived": Unix time in seconds at which the request was received; "in_flight":
how many requests were being handled when it arrived, itself included, each counted until
its answer is about to be written, so never more than the sender had in flight), or
{"rejected": why} (answered 400) when verification fails.
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook

webhook = Webhook(sys.argv[1])
lock = threading.Lock()
state = {"fail": 0, "fail_status": {}, "delay": 0.0, "in_flight": 0}


def emit(value):
    with lock:
        sys.stdout.write(json.dumps(value) + "\n")
        sys.stdout.flush()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        arrived = time.time()
        with lock:
            state["in_flight"] += 1
            in_flight = state["in_flight"]
            self.counted = True
        try:
            self.handle_delivery(arrived, in_flight)
        finally:
            self.finished_handling()

    def finished_handling(self):
        """Counts this request out of the ones in flight, once."""
        with lock:
            if self.counted:
                state["in_flight"] -= 1
                self.counted = False

    def handle_delivery(self, arrived, in_flight):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        try:
            payload = webhook.verify(body, dict(self.headers.items()))
        except Exception as error:  # any verification failure is a rejection
            emit({"rejected": f"{type(error).__name__}: {error}"})
            self.answer(400)
            return
        status = payload.get("data", {}).get("event", {}).get("status")
        with lock:
            answer = 200
            if state["fail"] > 0:
                state["fail"] -= 1
                answer = 500
            elif state["fail_status"].get(status, 0) > 0:
                state["fail_status"][status] -= 1
                answer = 500
            delay = state["delay"]
        if delay:
            time.sleep(delay)
        emit({
            "id": self.headers["webhook-id"],
            "timestamp": self.headers["webhook-timestamp"],
            "answer": answer,
            "body": payload,
            "path": self.path,
            "arrived": arrived,
            "in_flight": in_flight,
        })
        self.answer(answer)

    def answer(self, code):
        # No longer in flight once the answer is on its way: the sender may start its next
        # request as soon as it reads it, and that one must not count this one too.
        self.finished_handling()
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    # Room for the forwarder's 256 connections at once: with the default backlog of 5,
    # connections wait out SYN retransmissions and deliveries time out.
    request_queue_size = 1024

    def handle_error(self, request, client_address):
        pass  # a sender killed mid-request: the test judges what was reported


def serve(port):
    server = Server(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


server = serve(0)
port = server.server_address[1]
emit({"port": port})
for line in sys.stdin:
    command = line.split()
    if not command:
        continue
    if command[0] == "down" and server is not None:
        server.shutdown()
        server.server_close()
        server = None
    elif command[0] == "up" and server is None:
        server = serve(port)
    elif command[0] == "fail":
        with lock:
            state["fail"] = int(command[1])
    elif command[0] == "fail-status":
        with lock:
            state["fail_status"][command[1]] = int(command[2])
    elif command[0] == "delay":
        with lock:
            state["delay"] = int(command[1]) / 1000
    emit({"ok": line.strip()})
