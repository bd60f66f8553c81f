#!/usr/bin/env python3
"""A local, stateful stand-in for the part of Cloudflare's v4 API that extdns uses.

Written from Cloudflare's published API documentation (developers.cloudflare.com/api):
the response envelope ({success, errors[{code, message}], messages, result, result_info}),
page/per_page pagination, zone lookup by name and id, DNS record listing, single record
create/delete, and the batch endpoint POST /zones/{zone_id}/dns_records/batch, which runs
deletes, patches, puts and posts in that order in one transaction: all or nothing.

Not Cloudflare: error codes and messages are those Cloudflare documents or is known to send
where we know them, and the fake's own wording elsewhere; validation covers what extdns can
get wrong (types, TTL range, proxied on unproxiable types, CNAME conflicts, identical
records, unknown ids), not everything Cloudflare checks.

Usage: fake.py --port P --token T [--zone NAME ...] [--batch-limit N]
API under /client/v4. Control endpoints (no token) under /__fake/:
  GET  /__fake/health                  200 when serving
  GET  /__fake/requests                every API request received, in order
  DELETE /__fake/requests              forget them
  POST /__fake/fail {status, count, retry_after?, match?, code?, message?, after_apply?}
                                       answer the next `count` API requests whose path
                                       contains `match` with `status` (429 gets Retry-After);
                                       with after_apply the request is served first and only
                                       its answer replaced (applied, answer lost)
  POST /__fake/zones {name}            add a zone
  POST /__fake/records {zone, record}  add a record without going through the API (a
                                       foreign record)
  GET  /__fake/records?zone=NAME       the zone's records
  POST /__fake/token {token}           the token accepted from now on
"""

import argparse
import hashlib
import ipaddress
import json
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

API = "/client/v4"
PROXIABLE = {"A", "AAAA", "CNAME"}
TYPES = {"A", "AAAA", "CNAME", "TXT", "MX", "NS", "PTR", "SRV", "CAA", "HTTPS", "SVCB", "LOC", "DS"}


class ApiError(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class State:
    def __init__(self, token, batch_limit):
        self.lock = threading.Lock()
        self.token = token
        self.batch_limit = batch_limit
        self.zones = {}  # id -> {"id", "name", "records": {id: record}}
        self.requests = []
        self.failures = []  # [{status, count, retry_after, match, code, message}]

    def add_zone(self, name):
        name = name.strip().rstrip(".").lower()
        zid = hashlib.md5(name.encode()).hexdigest()
        self.zones.setdefault(zid, {"id": zid, "name": name, "records": {}})
        return self.zone_view(self.zones[zid])

    @staticmethod
    def zone_view(z):
        return {
            "id": z["id"],
            "name": z["name"],
            "status": "active",
            "paused": False,
            "type": "full",
            "name_servers": ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"],
        }

    def zone_by_name(self, name):
        for z in self.zones.values():
            if z["name"] == name:
                return z
        return None


def paginate(items, query, default_per_page, max_per_page):
    try:
        page = int(query.get("page", ["1"])[0])
        per_page = int(query.get("per_page", [str(default_per_page)])[0])
    except ValueError:
        raise ApiError(400, 1001, "page and per_page must be numbers")
    if page < 1 or per_page < 5 or per_page > max_per_page:
        raise ApiError(400, 1001, f"per_page must be between 5 and {max_per_page}, page at least 1")
    total = len(items)
    total_pages = (total + per_page - 1) // per_page
    chunk = items[(page - 1) * per_page : page * per_page]
    info = {"page": page, "per_page": per_page, "count": len(chunk), "total_count": total, "total_pages": total_pages}
    return chunk, info


def normalize_name(name, zone_name):
    name = (name or "").strip().rstrip(".").lower()
    if name in ("", "@"):
        return zone_name
    if name != zone_name and not name.endswith("." + zone_name):
        # Cloudflare reads a name outside the zone as relative to it.
        name = f"{name}.{zone_name}"
    return name


def build_record(zone, body, existing=None):
    """The record `body` describes (merged over `existing` for a patch), validated."""
    rec = dict(existing or {})
    for k in ("type", "name", "content", "ttl", "proxied", "priority", "data", "comment", "tags"):
        if k in body:
            rec[k] = body[k]
    rtype = str(rec.get("type", "")).upper()
    if rtype not in TYPES:
        raise ApiError(400, 1004, f"DNS Validation Error: unsupported record type {rec.get('type')!r}")
    rec["type"] = rtype
    rec["name"] = normalize_name(rec.get("name"), zone["name"])
    ttl = rec.get("ttl", 1)
    if not isinstance(ttl, int) or not (ttl == 1 or 60 <= ttl <= 86400):
        raise ApiError(400, 9021, "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic.")
    rec["ttl"] = ttl
    proxied = bool(rec.get("proxied", False))
    if proxied and rtype not in PROXIABLE:
        raise ApiError(400, 9004, "This record type cannot be proxied.")
    if proxied and ttl != 1:
        # Cloudflare keeps proxied records at automatic TTL.
        rec["ttl"] = 1
    rec["proxied"] = proxied
    rec["proxiable"] = rtype in PROXIABLE
    data = rec.get("data")
    if rtype == "SRV":
        if not isinstance(data, dict) or not all(k in data for k in ("priority", "weight", "port", "target")):
            raise ApiError(400, 9101, "SRV records need data.priority, data.weight, data.port and data.target.")
        rec["priority"] = data["priority"]
        rec["content"] = f"{data['weight']} {data['port']} {str(data['target']).rstrip('.')}"
    elif rtype == "CAA":
        if not isinstance(data, dict) or not all(k in data for k in ("flags", "tag", "value")):
            raise ApiError(400, 9101, "CAA records need data.flags, data.tag and data.value.")
        rec["content"] = f"{data['flags']} {data['tag']} \"{data['value']}\""
    content = str(rec.get("content", ""))
    if content == "":
        raise ApiError(400, 9000, "DNS Validation Error: content is required.")
    if rtype == "A":
        try:
            ipaddress.IPv4Address(content)
        except ValueError:
            raise ApiError(400, 9005, "Content for A record must be a valid IPv4 address.")
    if rtype == "AAAA":
        try:
            content = str(ipaddress.IPv6Address(content))
        except ValueError:
            raise ApiError(400, 9006, "Content for AAAA record must be a valid IPv6 address.")
    if rtype in ("CNAME", "NS", "PTR", "MX"):
        content = content.rstrip(".").lower()
    if rtype == "MX":
        if not isinstance(rec.get("priority"), int):
            raise ApiError(400, 9101, "MX records need a priority.")
    rec["content"] = content
    if len(content) > 2048 and rtype == "TXT":
        raise ApiError(400, 9100, "TXT content is too long.")
    rec.setdefault("id", uuid.uuid4().hex)
    rec["zone_id"] = zone["id"]
    rec["zone_name"] = zone["name"]
    rec.setdefault("created_on", now())
    rec["modified_on"] = now()
    rec.setdefault("meta", {})
    rec.setdefault("locked", False)
    rec.setdefault("comment", None)
    rec.setdefault("tags", [])
    return rec


def check_conflicts(records, rec):
    """Cloudflare's rules for a record joining `records` (the zone without `rec`)."""
    for other in records.values():
        if other["id"] == rec["id"] or other["name"] != rec["name"]:
            continue
        if rec["type"] == "CNAME" and other["type"] != "CNAME":
            raise ApiError(400, 81053, "An A, AAAA, or CNAME record with that host already exists.")
        if other["type"] == "CNAME" and rec["type"] != "CNAME":
            raise ApiError(400, 81054, "A CNAME record with that host already exists.")
        if other["type"] == "CNAME" and rec["type"] == "CNAME":
            raise ApiError(400, 81053, "An A, AAAA, or CNAME record with that host already exists.")
        if other["type"] == rec["type"] and other["content"] == rec["content"] and other.get("priority") == rec.get("priority"):
            raise ApiError(400, 81058, "An identical record already exists.")


def sort_key(r):
    return (r["name"], r["type"], r["content"])


class Handler(BaseHTTPRequestHandler):
    server_version = "fake-cloudflare/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.log_date_time_string(), fmt % args))

    @property
    def state(self):
        return self.server.state

    def send_json(self, status, payload, headers=None):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None, raw
        try:
            return json.loads(raw), raw
        except ValueError:
            return ApiError(400, 6007, "Malformed JSON in request body"), raw

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_PATCH(self):
        self.handle_any("PATCH")

    def do_PUT(self):
        self.handle_any("PUT")

    def do_DELETE(self):
        self.handle_any("DELETE")

    def handle_any(self, method):
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        body, raw = self.read_body()
        if url.path.startswith("/__fake/"):
            return self.control(method, url.path, query, body)
        entry = {
            "method": method,
            "path": url.path,
            "query": {k: v[0] if len(v) == 1 else v for k, v in query.items()},
            "authorization": self.headers.get("Authorization"),
            "body": None if isinstance(body, ApiError) else body,
            "time": time.time(),
        }
        status, payload, headers = self.api(method, url.path, query, body)
        entry["status"] = status
        with self.state.lock:
            self.state.requests.append(entry)
        self.send_json(status, payload, headers)

    def control(self, method, path, query, body):
        st = self.state
        body = body if isinstance(body, dict) else {}
        with st.lock:
            if path == "/__fake/health":
                return self.send_json(200, {"ok": True})
            if path == "/__fake/requests" and method == "GET":
                return self.send_json(200, st.requests)
            if path == "/__fake/requests" and method == "DELETE":
                st.requests = []
                return self.send_json(200, {"ok": True})
            if path == "/__fake/fail" and method == "POST":
                st.failures.append(
                    {
                        "status": int(body.get("status", 429)),
                        "count": int(body.get("count", 1)),
                        "retry_after": body.get("retry_after"),
                        "match": body.get("match", ""),
                        "code": body.get("code"),
                        "message": body.get("message"),
                        "after_apply": bool(body.get("after_apply", False)),
                    }
                )
                return self.send_json(200, {"ok": True})
            if path == "/__fake/zones" and method == "POST":
                return self.send_json(200, st.add_zone(body["name"]))
            if path == "/__fake/token" and method == "POST":
                st.token = body["token"]
                return self.send_json(200, {"ok": True})
            if path == "/__fake/records":
                zname = (body.get("zone") if method == "POST" else query.get("zone", [""])[0]).rstrip(".").lower()
                zone = st.zone_by_name(zname)
                if zone is None:
                    return self.send_json(404, {"error": f"no zone {zname}"})
                if method == "GET":
                    return self.send_json(200, sorted(zone["records"].values(), key=sort_key))
                try:
                    rec = build_record(zone, body["record"])
                    check_conflicts(zone["records"], rec)
                except ApiError as e:
                    return self.send_json(400, {"error": e.message})
                zone["records"][rec["id"]] = rec
                return self.send_json(200, rec)
        self.send_json(404, {"error": "unknown control endpoint"})

    def envelope_error(self, status, code, message, headers=None):
        return status, {"success": False, "errors": [{"code": code, "message": message}], "messages": [], "result": None}, headers

    def api(self, method, path, query, body):
        st = self.state
        if not path.startswith(API + "/"):
            return self.envelope_error(404, 7000, f"No route for that URI")
        rest = path[len(API) :]
        with st.lock:
            lost = None
            for f in st.failures:
                if f["count"] > 0 and f["match"] in rest:
                    f["count"] -= 1
                    if f.get("after_apply"):
                        lost = f
                        break
                    headers = {}
                    if f["status"] == 429:
                        headers["Retry-After"] = str(f["retry_after"] if f["retry_after"] is not None else 1)
                    code = f["code"] or (971 if f["status"] == 429 else 10002)
                    message = f["message"] or (
                        "Please wait and consider throttling your request speed"
                        if f["status"] == 429
                        else "Internal Server Error"
                    )
                    return self.envelope_error(f["status"], code, message, headers)
            auth = self.headers.get("Authorization")
            if not auth:
                return self.envelope_error(400, 9106, "Missing X-Auth-Key, X-Auth-Email or Authorization headers")
            if not auth.startswith("Bearer ") or not auth[7:].strip():
                return (
                    400,
                    {
                        "success": False,
                        "errors": [
                            {
                                "code": 6003,
                                "message": "Invalid request headers",
                                "error_chain": [{"code": 6111, "message": "Invalid format for Authorization header"}],
                            }
                        ],
                        "messages": [],
                        "result": None,
                    },
                    None,
                )
            if auth[7:].strip() != st.token:
                return self.envelope_error(403, 10000, "Authentication error")
            if isinstance(body, ApiError):
                return self.envelope_error(body.status, body.code, body.message)
            try:
                status, result, info = self.route(method, rest, query, body)
            except ApiError as e:
                return self.envelope_error(e.status, e.code, e.message)
            if lost is not None:
                return self.envelope_error(lost["status"], lost["code"] or 10002, lost["message"] or "Bad Gateway")
        payload = {"success": True, "errors": [], "messages": [], "result": result}
        if info is not None:
            payload["result_info"] = info
        return status, payload, None

    def zone_or_404(self, zid):
        zone = self.state.zones.get(zid)
        if zone is None:
            raise ApiError(404, 7003, f"Could not route to /zones/{zid}, perhaps your object identifier is invalid?")
        return zone

    def route(self, method, rest, query, body):
        st = self.state
        parts = [p for p in rest.split("/") if p]
        if parts == ["user", "tokens", "verify"] and method == "GET":
            return 200, {"id": "fake", "status": "active"}, None
        if parts == ["zones"] and method == "GET":
            zones = sorted(st.zones.values(), key=lambda z: z["name"])
            if "name" in query:
                wanted = query["name"][0].rstrip(".").lower()
                zones = [z for z in zones if z["name"] == wanted]
            chunk, info = paginate([State.zone_view(z) for z in zones], query, 20, 50)
            return 200, chunk, info
        if len(parts) == 2 and parts[0] == "zones" and method == "GET":
            return 200, State.zone_view(self.zone_or_404(parts[1])), None
        if len(parts) >= 3 and parts[0] == "zones" and parts[2] == "dns_records":
            zone = self.zone_or_404(parts[1])
            if len(parts) == 3 and method == "GET":
                recs = sorted(zone["records"].values(), key=sort_key)
                if "name" in query:
                    recs = [r for r in recs if r["name"] == query["name"][0].rstrip(".").lower()]
                if "type" in query:
                    recs = [r for r in recs if r["type"] == query["type"][0].upper()]
                chunk, info = paginate(recs, query, 100, 5000000)
                return 200, chunk, info
            if len(parts) == 3 and method == "POST":
                rec = build_record(zone, body or {})
                check_conflicts(zone["records"], rec)
                zone["records"][rec["id"]] = rec
                return 200, rec, None
            if len(parts) == 4 and parts[3] == "batch" and method == "POST":
                return 200, self.batch(zone, body or {}), None
            if len(parts) == 4 and method == "DELETE":
                if parts[3] not in zone["records"]:
                    raise ApiError(404, 81044, "Record does not exist.")
                del zone["records"][parts[3]]
                return 200, {"id": parts[3]}, None
        raise ApiError(404, 7000, "No route for that URI")

    def batch(self, zone, body):
        if not isinstance(body, dict):
            raise ApiError(400, 1004, "The batch body must be an object")
        ops = {k: body.get(k) or [] for k in ("deletes", "patches", "puts", "posts")}
        if not all(isinstance(v, list) for v in ops.values()):
            raise ApiError(400, 1004, "deletes, patches, puts and posts must be arrays")
        total = sum(len(v) for v in ops.values())
        if total > self.state.batch_limit:
            raise ApiError(400, 1004, f"A batch holds at most {self.state.batch_limit} operations on this plan, got {total}")
        # One transaction: work on a copy, keep it only when every operation succeeded.
        records = {k: dict(v) for k, v in zone["records"].items()}
        out = {"deletes": [], "patches": [], "puts": [], "posts": []}
        for op in ops["deletes"]:
            rid = op.get("id") if isinstance(op, dict) else None
            if rid not in records:
                raise ApiError(400, 81044, f"Record does not exist. (deletes: {rid})")
            out["deletes"].append(records.pop(rid))
        for kind in ("patches", "puts"):
            for op in ops[kind]:
                rid = op.get("id") if isinstance(op, dict) else None
                if rid not in records:
                    raise ApiError(400, 81044, f"Record does not exist. ({kind}: {rid})")
                base = records[rid] if kind == "patches" else {"id": rid, "created_on": records[rid]["created_on"]}
                rec = build_record(zone, {k: v for k, v in op.items() if k != "id"}, base)
                others = {k: v for k, v in records.items() if k != rid}
                check_conflicts(others, rec)
                records[rid] = rec
                out[kind].append(rec)
        for op in ops["posts"]:
            rec = build_record(zone, op if isinstance(op, dict) else {})
            check_conflicts(records, rec)
            records[rec["id"]] = rec
            out["posts"].append(rec)
        zone["records"] = records
        return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--zone", action="append", default=[])
    ap.add_argument("--batch-limit", type=int, default=200)
    args = ap.parse_args()
    state = State(args.token, args.batch_limit)
    for z in args.zone:
        state.add_zone(z)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.state = state
    sys.stderr.write(f"fake Cloudflare API on http://127.0.0.1:{args.port}{API}, zones {args.zone}\n")
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
