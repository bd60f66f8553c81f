#!/usr/bin/env python3
"""A reference server of external-dns's webhook provider protocol, for extdns's tests.

Written from external-dns's docs/tutorials/webhook-provider.md and its provider/webhook/api
package: the routes, the media type, the endpoint and changes JSON. Records live in memory.

    python3 e2e/webhook/server.py --port 8888 --domain example.org [--domain ...]
        [--exclude sub.example.org] [--min-ttl 60]

Routes (the protocol):
  GET  /                  negotiation: the domain filter {"include": [...], "exclude": [...]},
                          Content-Type and Vary as external-dns checks them. 406 when Accept
                          names another media type.
  GET  /records           every record, as external-dns endpoints.
  POST /records           {"create", "updateOld", "updateNew", "delete"}, exactly the names of
                          the `changes` schema of external-dns's api/webhook.yaml (as a server
                          generated from it or a serde one decodes them: another spelling,
                          "Create" say, is refused with 400 rather than read as nothing).
                          Applied all or nothing; 204 when applied. A Content-Type other than
                          the media type is refused with 415.
                          Refusals: 400 for malformed input, 409 for a conflict (a create of an
                          RRset that exists, an update or delete of one that does not, a CNAME
                          beside other data), 422 for a name outside the domain filter.
  POST /adjustendpoints   the endpoints as this "provider" would hold them: names lower case,
                          TTLs raised to --min-ttl.
  GET  /healthz           200.
Test knobs (not part of the protocol):
  POST /_test/fail        {"route": "POST /records", "status": 503, "count": 1, "body": "...",
                          "after_apply": false}: the next `count` requests to `route` (any
                          route when "*"; count -1: until reset) get `status`; with
                          "after_apply" the request is served first and only its answer is
                          replaced (a change applied whose answer is lost).
  POST /_test/reset       forget failures and records.
  GET  /_test/requests    the requests served so far:
                          [{"method", "path", "accept", "content_type", "body"}].

Stop it with SIGTERM.
"""

import argparse
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MEDIA_TYPE = "application/external.dns.webhook+json;version=1"
# The properties of the `changes` schema of external-dns's api/webhook.yaml, in its order.
CHANGES_KEYS = ("create", "updateOld", "updateNew", "delete")

LOCK = threading.Lock()
RECORDS = {}  # (dnsName, recordType, setIdentifier) -> endpoint dict
FAILURES = []  # [{"route", "status", "count", "body"}]
REQUESTS = []
ARGS = None


def norm(name):
    return name.strip().rstrip(".").lower()


def key_of(ep):
    return (norm(ep.get("dnsName", "")), ep.get("recordType", ""), ep.get("setIdentifier", "") or "")


def in_filter(name):
    name = norm(name)

    def below(d):
        d = norm(d)
        if d.startswith("."):
            return name.endswith(d)
        return name == d or name.endswith("." + d)

    if ARGS.domain and not any(below(d) for d in ARGS.domain):
        return False
    return not any(below(d) for d in ARGS.exclude)


class Refused(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def check_endpoint(ep):
    if not isinstance(ep, dict) or not isinstance(ep.get("dnsName"), str) or not ep.get("recordType"):
        raise Refused(400, "an endpoint needs dnsName and recordType: %r" % (ep,))
    if not isinstance(ep.get("targets", []), list):
        raise Refused(400, "targets must be a list: %r" % (ep,))
    if not in_filter(ep["dnsName"]):
        raise Refused(422, "%s is outside the domain filter" % ep["dnsName"])


def stored(ep):
    out = {"dnsName": norm(ep["dnsName"]), "recordType": ep["recordType"], "targets": list(ep.get("targets") or [])}
    for k in ("setIdentifier", "recordTTL", "labels", "providerSpecific"):
        if ep.get(k):
            out[k] = ep[k]
    return out


def apply_changes(changes, state):
    """Applies to a copy of `state`; returns it or raises Refused."""
    if not isinstance(changes, dict):
        raise Refused(400, "changes must be an object")
    unknown = sorted(set(changes) - set(CHANGES_KEYS))
    if unknown:
        raise Refused(400, "changes: unknown fields %s (the schema has %s)" % (unknown, list(CHANGES_KEYS)))
    for k in CHANGES_KEYS:
        if not isinstance(changes.get(k) or [], list):
            raise Refused(400, "changes: %s must be a list of endpoints" % k)
    create, old, new, delete = (changes.get(k) or [] for k in CHANGES_KEYS)
    if len(old) != len(new):
        raise Refused(400, "updateOld and updateNew differ in length")
    state = dict(state)
    for ep in delete + old:
        check_endpoint(ep)
        if key_of(ep) not in state:
            raise Refused(409, "%s %s does not exist" % (norm(ep["dnsName"]), ep["recordType"]))
    for ep in delete:
        del state[key_of(ep)]
    for ep in old:
        del state[key_of(ep)]
    for ep in new + create:
        check_endpoint(ep)
        k = key_of(ep)
        if k in state:
            raise Refused(409, "%s %s exists already" % (k[0], k[1]))
        others = [o for o in state if o[0] == k[0] and o[1] != k[1]]
        if ep["recordType"] == "CNAME" and others or any(o[1] == "CNAME" for o in others):
            raise Refused(409, "%s %s: a CNAME cannot share its name with other data" % (k[0], k[1]))
        state[k] = stored(ep)
    return state


def adjust(eps):
    out = []
    for ep in eps:
        ep = dict(ep)
        ep["dnsName"] = norm(ep.get("dnsName", ""))
        ttl = ep.get("recordTTL") or 0
        if ARGS.min_ttl and ttl and ttl < ARGS.min_ttl:
            ep["recordTTL"] = ARGS.min_ttl
        out.append(ep)
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("webhook: " + (fmt % args) + "\n")

    def reply(self, status, body=None, content_type=MEDIA_TYPE):
        lost = getattr(self, "lost", None)
        if lost:
            # Served, but the client hears the injected failure instead.
            self.lost = None
            status, body, content_type = lost["status"], lost.get("body", "injected failure").encode(), "text/plain"
        data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Vary", "Content-Type")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        return raw

    def injected(self, route):
        with LOCK:
            for f in FAILURES:
                if f["count"] != 0 and f["route"] in ("*", route):
                    if f["count"] > 0:
                        f["count"] -= 1
                    return f
        return None

    def content_type_ok(self):
        ct = (self.headers.get("Content-Type") or "").replace(" ", "").lower()
        return ct in ("", MEDIA_TYPE)

    def accept_ok(self):
        accept = self.headers.get("Accept")
        return accept in (None, "", "*/*", MEDIA_TYPE) or MEDIA_TYPE in accept

    def handle_any(self, method):
        raw = self.body() if method == "POST" else b""
        path = self.path.split("?")[0]
        route = "%s %s" % (method, path)
        if not path.startswith("/_test/"):
            with LOCK:
                REQUESTS.append(
                    {
                        "method": method,
                        "path": path,
                        "accept": self.headers.get("Accept"),
                        "content_type": self.headers.get("Content-Type"),
                        "body": raw.decode("utf-8", "replace"),
                    }
                )
            f = self.injected(route)
            self.lost = f if f and f.get("after_apply") else None
            if f and not self.lost:
                return self.reply(f["status"], f.get("body", "injected failure").encode(), "text/plain")
        try:
            payload = json.loads(raw) if raw else None
        except ValueError as e:
            return self.reply(400, ("malformed JSON: %s" % e).encode(), "text/plain")
        if route == "GET /healthz":
            return self.reply(200, b"ok", "text/plain")
        if route == "POST /_test/fail":
            with LOCK:
                FAILURES.append(
                    {
                        "route": payload.get("route", "*"),
                        "status": int(payload["status"]),
                        "count": int(payload.get("count", 1)),
                        "body": payload.get("body", "injected failure"),
                        "after_apply": bool(payload.get("after_apply", False)),
                    }
                )
            return self.reply(204)
        if route == "POST /_test/reset":
            with LOCK:
                FAILURES.clear()
                RECORDS.clear()
                REQUESTS.clear()
            return self.reply(204)
        if route == "GET /_test/requests":
            with LOCK:
                return self.reply(200, list(REQUESTS), "application/json")
        if method == "GET" and path in ("/", "/records") and not self.accept_ok():
            return self.reply(406, ("Accept must be %s" % MEDIA_TYPE).encode(), "text/plain")
        if route == "GET /":
            df = {}
            if ARGS.domain:
                df["include"] = sorted(ARGS.domain)
            if ARGS.exclude:
                df["exclude"] = sorted(ARGS.exclude)
            return self.reply(200, df)
        if route == "GET /records":
            with LOCK:
                return self.reply(200, [RECORDS[k] for k in sorted(RECORDS)])
        if method == "POST" and path in ("/records", "/adjustendpoints") and not self.content_type_ok():
            return self.reply(415, ("Content-Type must be %s" % MEDIA_TYPE).encode(), "text/plain")
        if route == "POST /records":
            try:
                with LOCK:
                    applied = apply_changes(payload, RECORDS)
                    RECORDS.clear()
                    RECORDS.update(applied)
            except Refused as e:
                return self.reply(e.status, e.message.encode(), "text/plain")
            except (AttributeError, TypeError, KeyError) as e:
                return self.reply(400, ("malformed changes: %s" % e).encode(), "text/plain")
            return self.reply(204)
        if route == "POST /adjustendpoints":
            if not isinstance(payload, list):
                return self.reply(400, b"expected a list of endpoints", "text/plain")
            return self.reply(200, adjust(payload))
        return self.reply(404, b"no such route", "text/plain")

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")


def main():
    global ARGS
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8888)
    p.add_argument("--address", default="127.0.0.1")
    p.add_argument("--domain", action="append", default=[], help="domain filter include entry")
    p.add_argument("--exclude", action="append", default=[], help="domain filter exclude entry")
    p.add_argument("--min-ttl", type=int, default=0, help="adjustendpoints raises TTLs to this")
    ARGS = p.parse_args()
    server = ThreadingHTTPServer((ARGS.address, ARGS.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    sys.stderr.write("webhook: serving on %s:%d for %s\n" % (ARGS.address, ARGS.port, ARGS.domain))
    server.serve_forever()


if __name__ == "__main__":
    main()
