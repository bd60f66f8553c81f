#!/usr/bin/env python3
"""A local, stateful stand-in for the part of Google Cloud DNS API v1 that extdns uses, with
Google's OAuth2 token endpoint and the GCE metadata server's token path beside it.

Written from the published specification: the discovery document dns.v1.json that Google's
Python client (google-api-python-client) ships in googleapiclient/discovery_cache/documents/
is loaded at start, and every API request is routed, checked and answered from it:
  * methods and URL templates (managedZones.list/get, resourceRecordSets.list, changes.create/
    get/list, projects.get are served; any other method of the document answers 501);
  * query parameters: only those the method and the document's standard parameters declare;
  * request bodies: every field must be a property of the schema, with the declared JSON type
    (unknown names are refused as Google refuses them: 400 "Invalid JSON payload received");
  * responses carry the schema's `kind` defaults (dns#change, dns#resourceRecordSet, ...) and
    are checked against the schemas before they are sent (a fake bug fails loudly, as 500).
Change semantics, as Google documents them: a Change is applied atomically, deletions first,
then additions; a deletion must match the held record set exactly (name, type, ttl, rrdatas)
else 412 conditionNotMet, or 404 notFound when nothing of that name and type is held; an
addition of a record set that exists is 409 alreadyExists; a CNAME cannot share its name with
other data (400 cnameResourceRecordSetConflict); changes.create answers status "pending", and
changes.get says "done" once the change is live (after --pending-gets polls; 0: at once).
Per-change limits come from the project's quota (projects.get): rrsetAdditionsPerChange,
rrsetDeletionsPerChange, totalRrdataSizePerChange (Google's documented 1000, 1000, 100000).
Errors use Google's JSON error shape {"error": {code, message, status, errors[{domain, reason,
message}]}}.

OAuth2 (POST /token): the JWT-bearer grant of a service-account key. The assertion must be an
RS256 JWT signed by a key this fake issued (/__fake/keys), with iss = the key's client_email,
a scope, iat/exp within an hour, and aud = this endpoint's URL or https://oauth2.googleapis.com/token
(google-auth always signs for the latter, whatever the key's token_uri says). Answers an opaque
access token for that identity. GET /computeMetadata/v1/instance/service-accounts/default/token
with `Metadata-Flavor: Google` answers a token for the --metadata-email identity, as GKE's
metadata server does for Workload Identity; /computeMetadata/v1/project/project-id answers
--metadata-project.

Usage: fake.py --port P [--project ID ...] [--zone PROJECT/NAME=DNSNAME[/private] ...]
               [--metadata-email E] [--metadata-project ID] [--page-size N] [--pending-gets N]
Control endpoints (no auth) under /__fake/:
  GET  /__fake/health                    200 when serving
  GET  /__fake/requests                  every API, token and metadata request, in order
  DELETE /__fake/requests                forget them
  POST /__fake/keys {email, project?, grant?}
                                         a new service-account JSON key (token_uri: this
                                         fake), whose identity may use `project` unless
                                         grant is false
  POST /__fake/grant {email, project}    let an identity use a project
  GET  /__fake/tokens                    every access token issued: {email, via, scope, aud}
  POST /__fake/fail {status, count, match?, reason?, message?, retry_after?, after_apply?}
                                         answer the next `count` requests whose path holds
                                         `match` with `status` (after_apply: serve it first,
                                         then answer the error: applied, answer lost)
  POST /__fake/zones {project, name, dnsName, visibility?}
  POST /__fake/rrsets {project, zone, rrset}   add a record set behind the API's back
  GET  /__fake/rrsets?project=P&zone=Z   the zone's record sets
  POST /__fake/settings {pending_gets?, page_size?, token_ttl?, metadata_email?,
                         metadata_project?, quota?: {PROJECT: {rrsetAdditionsPerChange: N, ...}}}
"""

import argparse
import base64
import hashlib
import ipaddress
import json
import os
import re
import secrets
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

GOOGLE_TOKEN_AUD = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DNS_SCOPES = {
    "https://www.googleapis.com/auth/ndev.clouddns.readwrite",
    "https://www.googleapis.com/auth/ndev.clouddns.readonly",
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/cloud-platform.read-only",
}
METADATA_TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"
METADATA_PROJECT_PATH = "/computeMetadata/v1/project/project-id"
SERVED = {
    "managedZones.list",
    "managedZones.get",
    "resourceRecordSets.list",
    "changes.create",
    "changes.get",
    "changes.list",
    "projects.get",
}
DEFAULT_QUOTA = {
    "rrsetAdditionsPerChange": 1000,
    "rrsetDeletionsPerChange": 1000,
    "totalRrdataSizePerChange": 100000,
    "resourceRecordsPerRrset": 100,
    "rrsetsPerManagedZone": 10000,
    "managedZones": 10000,
}
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    412: "FAILED_PRECONDITION",
    413: "RESOURCE_EXHAUSTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
}
HOSTNAME_TYPES = {"CNAME", "NS", "PTR"}


def discovery_document():
    import googleapiclient  # the pinned SDK of e2e/google/venv.sh

    path = os.path.join(os.path.dirname(googleapiclient.__file__), "discovery_cache", "documents", "dns.v1.json")
    with open(path) as f:
        return json.load(f), path


class ApiError(Exception):
    def __init__(self, status, reason, message, headers=None):
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.headers = headers or {}

    def body(self):
        return {
            "error": {
                "code": self.status,
                "message": self.message,
                "errors": [{"message": self.message, "domain": "global", "reason": self.reason}],
                "status": STATUS_NAMES.get(self.status, "UNKNOWN"),
            }
        }


def now_rfc3339():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


# --- the discovery document ------------------------------------------------------------------


class Spec:
    """Routes, parameters and schemas of dns.v1.json."""

    def __init__(self, doc):
        self.doc = doc
        self.schemas = doc["schemas"]
        self.standard_params = set(doc.get("parameters", {}))
        self.routes = []  # (http method, regex, method id, method description)
        for rname, resource in doc["resources"].items():
            for mname, m in resource.get("methods", {}).items():
                template = m.get("flatPath") or m["path"]
                names = re.findall(r"\{([^}]+)\}", template)
                pattern = "^/" + re.sub(r"\\\{[^}]+\\\}", "([^/]+)", re.escape(template)) + "$"
                self.routes.append((m["httpMethod"], re.compile(pattern), names, f"{rname}.{mname}", m))

    def route(self, method, path):
        allowed = False
        for http_method, rx, names, mid, m in self.routes:
            match = rx.match(path)
            if match:
                if http_method != method:
                    allowed = True
                    continue
                return mid, m, {n: unquote(v) for n, v in zip(names, match.groups())}
        if allowed:
            raise ApiError(405, "httpMethodNotAllowed", f"Method {method} is not allowed for {path}")
        raise ApiError(404, "notFound", f"The requested URL {path} was not found on this server.")

    def check_query(self, m, query):
        declared = set(m.get("parameters", {})) | self.standard_params
        for k in query:
            if k not in declared:
                raise ApiError(400, "badRequest", f'Invalid JSON payload received. Unknown name "{k}": Cannot bind query parameter.')
        for k, p in m.get("parameters", {}).items():
            if p.get("location") == "query" and k in query and p.get("type") == "integer":
                try:
                    int(query[k])
                except ValueError:
                    raise ApiError(400, "invalidParameter", f"Invalid value '{query[k]}' for {k}")

    def check_value(self, schema, value, where):
        """`value` against a schema node; raises ApiError(400) naming the field."""
        if "$ref" in schema:
            schema = self.schemas[schema["$ref"]]
        t = schema.get("type")
        bad = lambda what: ApiError(400, "badRequest", f"Invalid JSON payload received. Invalid value at '{where}' ({what})")
        if t == "object":
            if not isinstance(value, dict):
                raise bad("expected an object")
            props = schema.get("properties", {})
            extra = schema.get("additionalProperties")
            for k, v in value.items():
                if k in props:
                    self.check_value(props[k], v, f"{where}.{k}" if where else k)
                elif extra is not None:
                    self.check_value(extra, v, f"{where}.{k}" if where else k)
                else:
                    raise ApiError(400, "badRequest", f'Invalid JSON payload received. Unknown name "{k}" at \'{where}\': Cannot find field.')
        elif t == "array":
            if not isinstance(value, list):
                raise bad("expected a list")
            for i, v in enumerate(value):
                self.check_value(schema["items"], v, f"{where}[{i}]")
        elif t == "string":
            if not isinstance(value, str):
                raise bad("expected a string")
            if "enum" in schema and value not in schema["enum"]:
                raise bad(f"not one of {schema['enum']}")
        elif t == "integer":
            if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and re.fullmatch(r"-?\d+", value))):
                raise bad("expected an integer")
        elif t == "boolean":
            if not isinstance(value, bool):
                raise bad("expected a boolean")
        elif t == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad("expected a number")

    def with_kinds(self, schema_name, value):
        """`value` with the `kind` default of its schema (and of nested ones) filled in."""
        schema = self.schemas[schema_name]
        out = dict(value)
        props = schema.get("properties", {})
        if "kind" in props and "default" in props["kind"]:
            out["kind"] = props["kind"]["default"]
        for k, v in value.items():
            p = props.get(k, {})
            ref = p.get("$ref") or p.get("items", {}).get("$ref")
            if ref and isinstance(v, dict):
                out[k] = self.with_kinds(ref, v)
            elif ref and isinstance(v, list):
                out[k] = [self.with_kinds(ref, x) if isinstance(x, dict) else x for x in v]
        return out

    def response(self, m, value):
        name = m["response"]["$ref"]
        out = self.with_kinds(name, value)
        # The fake's own answers must fit the published schema.
        self.check_value({"$ref": name}, out, "")
        return out


# --- RS256 -----------------------------------------------------------------------------------


def new_key():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return key.public_key(), pem


def verify_rs256(public_key, signing_input, signature):
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    try:
        public_key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        return True
    except InvalidSignature:
        return False


# --- state -----------------------------------------------------------------------------------


class State:
    def __init__(self, args, spec):
        self.lock = threading.Lock()
        self.spec = spec
        self.port = args.port
        self.page_size = args.page_size
        self.pending_gets = args.pending_gets
        self.token_ttl = 3599
        self.metadata_email = args.metadata_email
        self.metadata_project = args.metadata_project
        self.projects = {}  # id -> {"number", "quota", "zones": {name: zone}}
        self.keys = {}  # kid -> {"email", "public_key"}
        self.grants = set()  # (email, project)
        self.tokens = {}  # access token -> {"email", "expires"}
        self.issued = []  # what /__fake/tokens shows
        self.requests = []
        self.failures = []
        self.next_zone_id = 1000
        for p in args.project:
            self.add_project(p)

    def token_url(self):
        return f"http://127.0.0.1:{self.port}/token"

    def add_project(self, pid):
        if pid not in self.projects:
            self.projects[pid] = {
                "number": str(100000000000 + len(self.projects)),
                "quota": dict(DEFAULT_QUOTA),
                "zones": {},
            }
        return self.projects[pid]

    def add_zone(self, project, name, dns_name, visibility="public"):
        p = self.add_project(project)
        dns_name = dns_name.lower()
        if not dns_name.endswith("."):
            dns_name += "."
        if name in p["zones"]:
            return p["zones"][name]
        self.next_zone_id += 1
        zone = {
            "id": str(4000000000000000000 + self.next_zone_id),
            "name": name,
            "dnsName": dns_name,
            "visibility": visibility,
            "description": "",
            "creationTime": now_rfc3339(),
            "nameServers": [f"ns-cloud-a{i}.googledomains.com." for i in range(1, 5)],
            "rrsets": {},  # (name, type) -> rrset
            "changes": [],  # {"id", "status", "gets", ...}
        }
        zone["rrsets"][(dns_name, "SOA")] = {
            "name": dns_name,
            "type": "SOA",
            "ttl": 21600,
            "rrdatas": ["ns-cloud-a1.googledomains.com. cloud-dns-hostmaster.google.com. 1 21600 3600 259200 300"],
        }
        zone["rrsets"][(dns_name, "NS")] = {"name": dns_name, "type": "NS", "ttl": 21600, "rrdatas": list(zone["nameServers"])}
        p["zones"][name] = zone
        return zone

    def zone_view(self, z):
        return {k: v for k, v in z.items() if k not in ("rrsets", "changes")}

    def find_zone(self, project, zone):
        p = self.projects.get(project)
        if p is None:
            raise ApiError(404, "notFound", f"The 'parameters.project' resource named '{project}' does not exist.")
        for z in p["zones"].values():
            if z["name"] == zone or z["id"] == zone:
                return z
        raise ApiError(404, "notFound", f"The 'parameters.managedZone' resource named '{zone}' does not exist.")


# --- record sets and changes -----------------------------------------------------------------


def check_rrset(rrset, zone, where, quota):
    for field in ("name", "type"):
        if not rrset.get(field):
            raise ApiError(400, "required", f"Required field '{where}.{field}' not specified")
    name, rtype = rrset["name"], rrset["type"]
    if not name.endswith("."):
        raise ApiError(400, "invalid", f"Invalid value for '{where}.name': '{name}'")
    lname = name.lower()
    if lname != zone["dnsName"] and not lname.endswith("." + zone["dnsName"]):
        raise ApiError(400, "invalid", f"The resource '{where}' named '{name} ({rtype})' is not within the zone '{zone['dnsName']}'")
    if "ttl" not in rrset:
        raise ApiError(400, "required", f"Required field '{where}.ttl' not specified")
    ttl = int(rrset["ttl"])
    if ttl < 0 or ttl > 2147483647:
        raise ApiError(400, "invalid", f"Invalid value for '{where}.ttl': '{ttl}'")
    rrdatas = rrset.get("rrdatas") or []
    if not rrdatas and not rrset.get("routingPolicy"):
        raise ApiError(400, "required", f"Required field '{where}.rrdata' not specified")
    if len(rrdatas) > quota["resourceRecordsPerRrset"]:
        raise ApiError(400, "invalid", f"The resource '{where}' has more than {quota['resourceRecordsPerRrset']} rrdatas")
    if len(set(rrdatas)) != len(rrdatas):
        raise ApiError(400, "invalid", f"The resource '{where}' has duplicate rrdatas")
    for i, d in enumerate(rrdatas):
        bad = ApiError(400, "invalid", f"Invalid value for '{where}.rrdata[{i}]': '{d}'")
        try:
            if rtype == "A":
                if str(ipaddress.IPv4Address(d)) != d:
                    raise bad
            elif rtype == "AAAA":
                ipaddress.IPv6Address(d)
            elif rtype in HOSTNAME_TYPES:
                if not d.endswith(".") or " " in d.strip():
                    raise bad
            elif rtype == "MX":
                prio, host = d.split(" ", 1)
                int(prio)
                if not host.strip().endswith("."):
                    raise bad
            elif rtype == "SRV":
                parts = d.split()
                if len(parts) != 4 or not all(p.isdigit() for p in parts[:3]) or not parts[3].endswith("."):
                    raise bad
            elif rtype == "CAA":
                if not re.fullmatch(r'\d+ [A-Za-z0-9]+ ".*"', d):
                    raise bad
            elif rtype == "TXT":
                if len(d) > 4000:
                    raise bad
        except ValueError:
            raise bad
    return {
        "name": lname,
        "type": rtype,
        "ttl": ttl,
        "rrdatas": list(rrdatas),
        **({"routingPolicy": rrset["routingPolicy"]} if rrset.get("routingPolicy") else {}),
    }


def rrdata_size(rrset):
    return sum(len(d) for d in rrset.get("rrdatas") or [])


def apply_change(zone, body, quota):
    """Applies a Change atomically to `zone`, or raises without touching it."""
    additions = body.get("additions") or []
    deletions = body.get("deletions") or []
    if not additions and not deletions:
        raise ApiError(400, "required", "The 'entity.change' parameter is required but was missing.")
    if len(additions) > quota["rrsetAdditionsPerChange"]:
        raise ApiError(413, "quotaExceeded", f"Quota exceeded for quota metric 'rrsetAdditionsPerChange': {len(additions)} additions, at most {quota['rrsetAdditionsPerChange']}")
    if len(deletions) > quota["rrsetDeletionsPerChange"]:
        raise ApiError(413, "quotaExceeded", f"Quota exceeded for quota metric 'rrsetDeletionsPerChange': {len(deletions)} deletions, at most {quota['rrsetDeletionsPerChange']}")
    size = sum(rrdata_size(r) for r in additions + deletions)
    if size > quota["totalRrdataSizePerChange"]:
        raise ApiError(413, "quotaExceeded", f"Quota exceeded for quota metric 'totalRrdataSizePerChange': {size} bytes, at most {quota['totalRrdataSizePerChange']}")
    rrsets = dict(zone["rrsets"])
    for i, d in enumerate(deletions):
        where = f"entity.change.deletions[{i}]"
        d = check_rrset(d, zone, where, quota)
        key = (d["name"], d["type"])
        held = rrsets.get(key)
        if held is None:
            raise ApiError(404, "notFound", f"The '{where}' resource named '{d['name']} ({d['type']})' does not exist.")
        if held["ttl"] != d["ttl"] or sorted(held["rrdatas"]) != sorted(d["rrdatas"]):
            raise ApiError(412, "conditionNotMet", f"Precondition not met for '{where}'")
        if d["type"] == "SOA" or (d["type"] == "NS" and d["name"] == zone["dnsName"]):
            if not any((a.get("name", "").lower(), a.get("type")) == key for a in additions):
                raise ApiError(400, "invalid", f"The '{where}' resource named '{d['name']} ({d['type']})' cannot be deleted: it belongs to the zone")
        del rrsets[key]
    for i, a in enumerate(additions):
        where = f"entity.change.additions[{i}]"
        a = check_rrset(a, zone, where, quota)
        key = (a["name"], a["type"])
        if key in rrsets:
            raise ApiError(409, "alreadyExists", f"The resource '{where}' named '{a['name']} ({a['type']})' already exists")
        others = [t for (n, t) in rrsets if n == a["name"]]
        if (a["type"] == "CNAME" and others) or ("CNAME" in others):
            raise ApiError(
                400,
                "cnameResourceRecordSetConflict",
                f"The resource record set '{where}' is invalid because the DNS name '{a['name']}' may have either one CNAME resource record set or resource record sets of other types, but not both.",
            )
        if len(rrsets) >= quota["rrsetsPerManagedZone"]:
            raise ApiError(413, "quotaExceeded", "Quota exceeded for quota metric 'rrsetsPerManagedZone'")
        rrsets[key] = a
    zone["rrsets"] = rrsets
    return additions, deletions


def rrset_view(r):
    return {k: v for k, v in r.items() if k in ("name", "type", "ttl", "rrdatas", "routingPolicy", "signatureRrdatas")}


def sorted_rrsets(zone):
    return [rrset_view(r) for _, r in sorted(zone["rrsets"].items())]


def page(items, query, default_size, key):
    try:
        start = int(b64url_decode(query["pageToken"]).decode()) if query.get("pageToken") else 0
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid", "Invalid value for 'parameters.pageToken'")
    size = int(query.get("maxResults") or default_size)
    if size <= 0:
        raise ApiError(400, "invalid", "Invalid value for 'parameters.maxResults'")
    chunk = items[start : start + size]
    out = {key: chunk}
    if start + size < len(items):
        out["nextPageToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode().rstrip("=")
    return out


# --- HTTP ------------------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    server_version = "fake-clouddns/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.log_date_time_string(), fmt % args))

    @property
    def state(self):
        return self.server.state

    def send_json(self, status, payload, headers=None):
        text = isinstance(payload, str)
        body = payload.encode() if text else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if text else "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_PUT(self):
        self.handle_any("PUT")

    def do_PATCH(self):
        self.handle_any("PATCH")

    def do_DELETE(self):
        self.handle_any("DELETE")

    def handle_any(self, method):
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if url.path.startswith("/__fake/"):
            return self.control(method, url.path, query, raw)
        entry = {
            "method": method,
            "path": url.path,
            "query": query,
            "authorization": self.headers.get("Authorization"),
            "time": time.time(),
        }
        try:
            entry["body"] = json.loads(raw) if raw and "json" in (self.headers.get("Content-Type") or "") else (raw.decode("utf-8", "replace") if raw else None)
        except ValueError:
            entry["body"] = raw.decode("utf-8", "replace")
        status, payload, headers = self.serve(method, url.path, query, raw)
        entry["status"] = status
        with self.state.lock:
            self.state.requests.append(entry)
        self.send_json(status, payload, headers)

    def injected(self, path):
        """The failure injected for `path`, if any (counted down)."""
        st = self.state
        for f in st.failures:
            if f["count"] > 0 and f["match"] in path:
                f["count"] -= 1
                return f
        return None

    def failure_error(self, f):
        status = f["status"]
        reason = f.get("reason") or {429: "rateLimitExceeded", 403: "forbidden", 401: "authError"}.get(status, "backendError")
        message = f.get("message") or {
            429: "Quota exceeded for quota metric 'Write requests' and limit 'Write requests per minute' of service 'dns.googleapis.com'.",
        }.get(status, "Internal error encountered." if status >= 500 else "Injected failure.")
        headers = {"Retry-After": str(f["retry_after"])} if f.get("retry_after") is not None else {}
        return ApiError(status, reason, message, headers)

    def serve(self, method, path, query, raw):
        st = self.state
        with st.lock:
            lost = self.injected(path)
            if lost is not None and not lost.get("after_apply"):
                e = self.failure_error(lost)
                return self.error(path, e)
            try:
                if path == "/token":
                    status, payload = self.token(method, raw)
                elif path == METADATA_TOKEN_PATH:
                    status, payload = self.metadata_token(method)
                elif path == METADATA_PROJECT_PATH:
                    status, payload = self.metadata_project()
                else:
                    status, payload = self.api(method, path, query, raw)
            except ApiError as e:
                return self.error(path, e)
            if lost is not None:
                return self.error(path, self.failure_error(lost))
            return status, payload, None

    def error(self, path, e):
        if path == "/token" and e.status < 500 and e.status != 429:
            return e.status, {"error": e.reason, "error_description": e.message}, e.headers
        return e.status, e.body(), e.headers

    # OAuth2 ----------------------------------------------------------------------------------

    def token(self, method, raw):
        st = self.state
        if method != "POST":
            raise ApiError(405, "invalid_request", "POST only")
        form = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != JWT_BEARER:
            raise ApiError(400, "unsupported_grant_type", f"Invalid grant_type: {form.get('grant_type')}")
        parts = (form.get("assertion") or "").split(".")
        if len(parts) != 3:
            raise ApiError(400, "invalid_grant", "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe")
        try:
            header = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
            signature = b64url_decode(parts[2])
        except ValueError:
            raise ApiError(400, "invalid_grant", "Invalid JWT: not base64url JSON")
        if header.get("alg") != "RS256":
            raise ApiError(400, "invalid_grant", f"Invalid JWT: alg {header.get('alg')!r} is not RS256")
        key = st.keys.get(header.get("kid")) if header.get("kid") else None
        candidates = [key] if key else [k for k in st.keys.values() if k["email"] == claims.get("iss")]
        if not candidates:
            raise ApiError(400, "invalid_grant", "Invalid grant: account not found")
        signing_input = (parts[0] + "." + parts[1]).encode()
        if not any(verify_rs256(k["public_key"], signing_input, signature) for k in candidates):
            raise ApiError(400, "invalid_grant", "Invalid JWT Signature.")
        k = candidates[0]
        if claims.get("iss") != k["email"]:
            raise ApiError(400, "invalid_grant", "Invalid JWT: iss is not the key's client_email")
        if claims.get("aud") not in (GOOGLE_TOKEN_AUD, st.token_url()):
            raise ApiError(400, "invalid_grant", f"Invalid JWT: aud {claims.get('aud')!r} is not the token endpoint")
        now = time.time()
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int) or exp - iat > 3600 or iat > now + 300 or exp < now - 300:
            raise ApiError(400, "invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.")
        scopes = set((claims.get("scope") or "").split())
        if not scopes:
            raise ApiError(400, "invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        return 200, self.issue(k["email"], "jwt-bearer", " ".join(sorted(scopes)), claims.get("aud"))

    def issue(self, email, via, scope, aud):
        st = self.state
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        st.tokens[token] = {"email": email, "expires": time.time() + st.token_ttl, "scope": scope}
        st.issued.append({"email": email, "via": via, "scope": scope, "aud": aud, "time": time.time()})
        return {"access_token": token, "expires_in": st.token_ttl, "token_type": "Bearer"}

    def metadata_token(self, method):
        st = self.state
        if self.headers.get("Metadata-Flavor") != "Google":
            raise ApiError(403, "forbidden", "Missing Metadata-Flavor:Google header.")
        if method != "GET":
            raise ApiError(405, "httpMethodNotAllowed", "GET only")
        if not st.metadata_email:
            raise ApiError(404, "notFound", "no service account is attached to this instance")
        return 200, self.issue(st.metadata_email, "metadata", "https://www.googleapis.com/auth/cloud-platform", None)

    def metadata_project(self):
        st = self.state
        if self.headers.get("Metadata-Flavor") != "Google":
            raise ApiError(403, "forbidden", "Missing Metadata-Flavor:Google header.")
        if not st.metadata_project:
            raise ApiError(404, "notFound", "no project")
        return 200, st.metadata_project

    # Cloud DNS -------------------------------------------------------------------------------

    def caller(self):
        st = self.state
        auth = self.headers.get("Authorization") or ""
        if not auth.startswith("Bearer "):
            raise ApiError(401, "required", "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.")
        t = st.tokens.get(auth[7:].strip())
        if t is None or t["expires"] < time.time():
            raise ApiError(401, "authError", "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.")
        return t["email"]

    def api(self, method, path, query, raw):
        st = self.state
        mid, m, params = st.spec.route(method, path)
        email = self.caller()
        if mid not in SERVED:
            raise ApiError(501, "notImplemented", f"{mid} is not served by the fake")
        st.spec.check_query(m, query)
        body = None
        if "request" in m:
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                raise ApiError(400, "parseError", "Invalid JSON payload received.")
            if body is None:
                raise ApiError(400, "required", "The 'entity.change' parameter is required but was missing.")
            st.spec.check_value(m["request"], body, "")
        project = params.get("project")
        if project not in st.projects or (email, project) not in st.grants:
            raise ApiError(403, "forbidden", f"Forbidden: the caller does not have permission dns on project {project}")
        p = st.projects[project]
        if mid == "projects.get":
            return 200, st.spec.response(m, {"id": project, "number": p["number"], "quota": p["quota"]})
        if mid == "managedZones.list":
            zones = sorted(p["zones"].values(), key=lambda z: z["name"])
            if query.get("dnsName"):
                want = query["dnsName"].lower()
                want = want if want.endswith(".") else want + "."
                zones = [z for z in zones if z["dnsName"] == want]
            out = page([st.zone_view(z) for z in zones], query, 1000, "managedZones")
            return 200, st.spec.response(m, out)
        zone = st.find_zone(project, params["managedZone"])
        if mid == "managedZones.get":
            return 200, st.spec.response(m, st.zone_view(zone))
        if mid == "resourceRecordSets.list":
            items = sorted_rrsets(zone)
            if query.get("name"):
                items = [r for r in items if r["name"] == query["name"].lower()]
            if query.get("type"):
                if not query.get("name"):
                    raise ApiError(400, "invalid", "The 'parameters.type' parameter is only valid with 'parameters.name'")
                items = [r for r in items if r["type"] == query["type"]]
            return 200, st.spec.response(m, page(items, query, st.page_size, "rrsets"))
        if mid == "changes.create":
            additions, deletions = apply_change(zone, body, p["quota"])
            change = {
                "id": str(len(zone["changes"]) + 1),
                "startTime": now_rfc3339(),
                "status": "pending",
                "additions": [rrset_view(a) for a in additions],
                "deletions": [rrset_view(d) for d in deletions],
                "gets": 0,
            }
            zone["changes"].append(change)
            return 200, st.spec.response(m, self.change_view(change))
        if mid == "changes.get":
            for c in zone["changes"]:
                if c["id"] == params["changeId"]:
                    c["gets"] += 1
                    if c["gets"] > st.pending_gets:
                        c["status"] = "done"
                    return 200, st.spec.response(m, self.change_view(c))
            raise ApiError(404, "notFound", f"The 'parameters.changeId' resource named '{params['changeId']}' does not exist.")
        if mid == "changes.list":
            return 200, st.spec.response(m, page([self.change_view(c) for c in zone["changes"]], query, 1000, "changes"))
        raise ApiError(501, "notImplemented", mid)

    @staticmethod
    def change_view(c):
        return {k: v for k, v in c.items() if k in ("id", "startTime", "status", "additions", "deletions")}

    # control ---------------------------------------------------------------------------------

    def control(self, method, path, query, raw):
        st = self.state
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return self.send_json(400, {"error": "body is not JSON"})
        with st.lock:
            if path == "/__fake/health":
                return self.send_json(200, {"ok": True, "discovery": st.spec.doc.get("revision")})
            if path == "/__fake/requests" and method == "GET":
                return self.send_json(200, st.requests)
            if path == "/__fake/requests" and method == "DELETE":
                st.requests = []
                return self.send_json(200, {"ok": True})
            if path == "/__fake/tokens":
                return self.send_json(200, st.issued)
            if path == "/__fake/keys" and method == "POST":
                email = body["email"]
                project = body.get("project") or next(iter(st.projects), "fake-project")
                public_key, pem = new_key()
                kid = hashlib.sha1(pem.encode()).hexdigest()
                st.keys[kid] = {"email": email, "public_key": public_key}
                if body.get("grant", True):
                    st.add_project(project)
                    st.grants.add((email, project))
                return self.send_json(
                    200,
                    {
                        "type": "service_account",
                        "project_id": project,
                        "private_key_id": kid,
                        "private_key": pem,
                        "client_email": email,
                        "client_id": str(int(kid[:15], 16)),
                        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                        "token_uri": st.token_url(),
                        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
                        "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{email}",
                        "universe_domain": "googleapis.com",
                    },
                )
            if path == "/__fake/grant" and method == "POST":
                st.add_project(body["project"])
                st.grants.add((body["email"], body["project"]))
                return self.send_json(200, {"ok": True})
            if path == "/__fake/fail" and method == "POST":
                st.failures.append(
                    {
                        "status": int(body.get("status", 429)),
                        "count": int(body.get("count", 1)),
                        "match": body.get("match", ""),
                        "reason": body.get("reason"),
                        "message": body.get("message"),
                        "retry_after": body.get("retry_after"),
                        "after_apply": bool(body.get("after_apply", False)),
                    }
                )
                return self.send_json(200, {"ok": True})
            if path == "/__fake/zones" and method == "POST":
                z = st.add_zone(body["project"], body["name"], body["dnsName"], body.get("visibility", "public"))
                return self.send_json(200, st.zone_view(z))
            if path == "/__fake/settings" and method == "POST":
                if "pending_gets" in body:
                    st.pending_gets = int(body["pending_gets"])
                if "page_size" in body:
                    st.page_size = int(body["page_size"])
                if "token_ttl" in body:
                    st.token_ttl = int(body["token_ttl"])
                if "metadata_email" in body:
                    st.metadata_email = body["metadata_email"]
                if "metadata_project" in body:
                    st.metadata_project = body["metadata_project"]
                for pid, q in (body.get("quota") or {}).items():
                    st.add_project(pid)["quota"].update(q)
                return self.send_json(200, {"ok": True})
            if path == "/__fake/rrsets":
                project = body.get("project") if method == "POST" else query.get("project")
                zname = body.get("zone") if method == "POST" else query.get("zone")
                try:
                    zone = st.find_zone(project, zname)
                    if method == "GET":
                        return self.send_json(200, sorted_rrsets(zone))
                    r = check_rrset(body["rrset"], zone, "rrset", st.projects[project]["quota"])
                    zone["rrsets"][(r["name"], r["type"])] = r
                    return self.send_json(200, rrset_view(r))
                except ApiError as e:
                    return self.send_json(400, {"error": e.message})
        self.send_json(404, {"error": "unknown control endpoint"})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--project", action="append", default=[])
    ap.add_argument("--zone", action="append", default=[], help="PROJECT/NAME=DNSNAME[/private]")
    ap.add_argument("--metadata-email", default="")
    ap.add_argument("--metadata-project", default="")
    ap.add_argument("--page-size", type=int, default=100, help="record sets per page without maxResults")
    ap.add_argument("--pending-gets", type=int, default=0, help="changes.get calls that still say pending")
    args = ap.parse_args()
    doc, doc_path = discovery_document()
    state = State(args, Spec(doc))
    for z in args.zone:
        left, dns = z.split("=", 1)
        project, name = left.split("/", 1)
        dns_name, _, vis = dns.partition("/")
        state.add_zone(project, name, dns_name, vis or "public")
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.state = state
    sys.stderr.write(
        f"fake Cloud DNS on http://127.0.0.1:{args.port}/dns/v1/ from {doc_path} (revision {doc.get('revision')}), "
        f"token endpoint {state.token_url()}, projects {list(state.projects)}\n"
    )
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
