#!/usr/bin/env python3
"""A local, stateful stand-in for the parts of Azure that extdns's azure and azurePrivateDns
backends use, over HTTPS (azure-core sends a bearer token over TLS only):

* the Microsoft Entra ID v2 token endpoint, POST /{tenant}/oauth2/v2.0/token (client
  credentials with a client secret or a client assertion), and the OpenID configuration
  MSAL (azure-identity) reads first, GET /{tenant}/v2.0/.well-known/openid-configuration;
* Azure DNS (Microsoft.Network/dnszones, api-version 2018-05-01 and 2023-07-01-preview) and
  Azure Private DNS (Microsoft.Network/privateDnsZones, api-versions 2018-09-01 to
  2024-06-01): zones listed by subscription and by resource group, record sets listed (all,
  or by type) with $top and nextLink paging, and GET/PUT/PATCH/DELETE of one record set
  with etags (If-Match, If-None-Match: * -> 412 PreconditionFailed).

Written from the published REST API reference and the models of PyPI's azure-mgmt-dns and
azure-mgmt-privatedns (RecordSet, ZoneListResult/RecordSetListResult with nextLink, etag,
CloudError {"error": {"code", "message"}}); e2e/azure/sdk_check.py drives it with those
SDKs. Ids spell the public resource type `dnszones` in lower case, as the service answers
(and as external-dns parses ids). Not Azure: the wording of messages is the fake's where the
reference does not give it, and validation covers what extdns can get wrong (types, values,
CNAME conflicts, TTL range, SOA and apex NS), not everything Azure checks.

Usage: fake.py --port P --cert C --key K --tenant T --client-id I --client-secret S
               [--subscription SUB] [--resource-group RG] [--zone NAME ...]
               [--private-zone NAME ...] [--federated-token JWT] [--page-size N]
The managed identity endpoint of IMDS is served at GET /metadata/identity/oauth2/token.
Control endpoints (no token) under /__fake/:
  GET  /__fake/health                     200 when serving
  GET  /__fake/requests                   every ARM request, in order: method, path, query,
                                          authorization, if_match, if_none_match, body,
                                          status, time
  DELETE /__fake/requests                 forget them
  GET  /__fake/tokens                     every token request: tenant, client_id, grant_type,
                                          scope, status
  POST /__fake/fail {status, count, match?, retry_after?, after_apply?}
                                          answer the next `count` ARM requests whose path
                                          contains `match` with `status` (a 429 carries
                                          Retry-After); with after_apply the request is
                                          served first (applied, answer lost)
  POST /__fake/recordsets {private?, zone, type, name, properties}
                                          a record set written behind extdns's back
  GET  /__fake/recordsets?zone=NAME[&private=1]  the zone's record sets, as the API lists them
"""

import argparse
import ipaddress
import json
import re
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit, unquote

PUBLIC, PRIVATE = "dnszones", "privateDnsZones"
API_VERSIONS = {
    PUBLIC: {"2018-05-01", "2023-07-01-preview"},
    PRIVATE: {"2018-09-01", "2020-01-01", "2020-06-01", "2024-06-01"},
}
# properties keys of each type's values; CNAME and SOA hold one object.
FIELDS = {
    PUBLIC: {"A": "ARecords", "AAAA": "AAAARecords", "CNAME": "CNAMERecord", "MX": "MXRecords", "NS": "NSRecords",
             "PTR": "PTRRecords", "SRV": "SRVRecords", "TXT": "TXTRecords", "CAA": "caaRecords", "SOA": "SOARecord"},
    PRIVATE: {"A": "aRecords", "AAAA": "aaaaRecords", "CNAME": "cnameRecord", "MX": "mxRecords",
              "PTR": "ptrRecords", "SRV": "srvRecords", "TXT": "txtRecords", "SOA": "soaRecord"},
}
TTL_KEY = {PUBLIC: "TTL", PRIVATE: "ttl"}
SINGLE = {"CNAME", "SOA"}
NAME_RE = re.compile(r"^(@|(\*|[a-z0-9_*](?:[a-z0-9_*-]{0,61}[a-z0-9_*])?)(\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*)$")


class ApiError(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class State:
    def __init__(self, args):
        self.lock = threading.Lock()
        self.args = args
        self.tokens_issued = set()
        self.zones = {}  # (kind, rg lower, name) -> {"name", "rg", "etag", "sets": {(TYPE, name lower): set}}
        self.requests = []
        self.token_requests = []
        self.failures = []

    def zone_id(self, kind, rg, name):
        return f"/subscriptions/{self.args.subscription}/resourceGroups/{rg}/providers/Microsoft.Network/{kind}/{name}"

    def add_zone(self, kind, name, rg=None):
        rg = rg or self.args.resource_group
        name = name.strip().rstrip(".").lower()
        key = (kind, rg.lower(), name)
        if key in self.zones:
            return self.zones[key]
        z = {"kind": kind, "name": name, "rg": rg, "etag": str(uuid.uuid4()), "sets": {}}
        self.zones[key] = z
        soa = {"host": "ns1-01.azure-dns.com." if kind == PUBLIC else "azureprivatedns.net", "email": "azuredns-hostmaster.microsoft.com",
               "serialNumber": 1, "refreshTime": 3600, "retryTime": 300, "expireTime": 2419200, "minimumTTL": 300}
        self.store(z, "SOA", "@", {TTL_KEY[kind]: 3600, FIELDS[kind]["SOA"]: soa})
        if kind == PUBLIC:
            ns = [{"nsdname": f"ns{i}-01.azure-dns.{tld}."} for i, tld in enumerate(["com", "net", "org", "info"], 1)]
            self.store(z, "NS", "@", {"TTL": 172800, "NSRecords": ns})
        return z

    def store(self, z, rtype, name, props):
        kind = z["kind"]
        rs = {
            "id": f"{self.zone_id(kind, z['rg'], z['name'])}/{rtype}/{name}",
            "name": name,
            "type": f"Microsoft.Network/{kind}/{rtype}",
            "etag": str(uuid.uuid4()),
            "properties": dict(props),
        }
        fqdn = z["name"] + "." if name == "@" else f"{name}.{z['name']}."
        rs["properties"]["fqdn"] = fqdn
        rs["properties"].setdefault("metadata", {})
        if kind == PUBLIC:
            rs["properties"]["provisioningState"] = "Succeeded"
        else:
            rs["properties"]["isAutoRegistered"] = False
        z["sets"][(rtype, name.lower())] = rs
        return rs

    def find_zone(self, kind, sub, rg, name):
        if sub != self.args.subscription:
            return None
        return self.zones.get((kind, rg.lower(), name.strip().rstrip(".").lower()))

    def zone_view(self, z):
        kind = z["kind"]
        view = {"id": self.zone_id(kind, z["rg"], z["name"]), "name": z["name"], "type": f"Microsoft.Network/{kind}",
                "location": "global", "etag": z["etag"], "tags": {}}
        if kind == PUBLIC:
            view["properties"] = {"maxNumberOfRecordSets": 10000, "numberOfRecordSets": len(z["sets"]), "zoneType": "Public",
                                  "nameServers": ["ns1-01.azure-dns.com.", "ns2-01.azure-dns.net."]}
        else:
            view["properties"] = {"maxNumberOfRecordSets": 25000, "numberOfRecordSets": len(z["sets"]),
                                  "provisioningState": "Succeeded", "internalId": z["etag"]}
        return view


def validate_values(kind, rtype, props):
    """Checks the values a PUT carries for `rtype`; refuses values of other types."""
    fields = FIELDS[kind]
    for t, key in fields.items():
        if t != rtype and props.get(key) not in (None, []):
            raise ApiError(400, "BadRequest", f"The record set of type '{rtype}' cannot hold {key}.")
    ttl = props.get(TTL_KEY[kind])
    if ttl is not None and (not isinstance(ttl, int) or not 0 <= ttl <= 2147483647):
        raise ApiError(400, "BadRequest", f"The value of {TTL_KEY[kind]} is invalid.")
    values = props.get(fields[rtype])
    if values is None:
        return
    items = [values] if rtype in SINGLE else values
    if not isinstance(items, list):
        raise ApiError(400, "BadRequest", f"{fields[rtype]} must be a list.")
    for item in items:
        check_item(rtype, item)


def check_item(rtype, item):
    def need(*keys):
        if not isinstance(item, dict) or any(k not in item for k in keys):
            raise ApiError(400, "BadRequest", f"A {rtype} record needs {', '.join(keys)}.")
    try:
        if rtype == "A":
            need("ipv4Address"); ipaddress.IPv4Address(item["ipv4Address"])
        elif rtype == "AAAA":
            need("ipv6Address"); ipaddress.IPv6Address(item["ipv6Address"])
        elif rtype == "CNAME":
            need("cname")
        elif rtype == "MX":
            need("preference", "exchange")
        elif rtype == "NS":
            need("nsdname")
        elif rtype == "PTR":
            need("ptrdname")
        elif rtype == "SRV":
            need("priority", "weight", "port", "target")
        elif rtype == "CAA":
            need("flags", "tag", "value")
        elif rtype == "TXT":
            need("value")
            if not isinstance(item["value"], list) or any(not isinstance(s, str) or len(s) > 1024 for s in item["value"]):
                raise ApiError(400, "BadRequest", "A TXT record's value is a list of strings of at most 1024 characters.")
    except ValueError as e:
        raise ApiError(400, "BadRequest", f"Invalid {rtype} record: {e}")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without this, Nagle and delayed ACKs add 40 ms
    # to every answer with a body.
    disable_nagle_algorithm = True
    state: State = None

    def log_message(self, fmt, *args):
        print("%s %s" % (self.address_string(), fmt % args), flush=True)

    def do_GET(self):
        self.handle_any("GET")

    def do_PUT(self):
        self.handle_any("PUT")

    def do_PATCH(self):
        self.handle_any("PATCH")

    def do_DELETE(self):
        self.handle_any("DELETE")

    def do_POST(self):
        self.handle_any("POST")

    def send_json(self, status, body, headers=None):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def handle_any(self, method):
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        raw = self.read_body()
        if url.path.startswith("/__fake/"):
            return self.control(method, url.path[len("/__fake/"):], query, raw)
        if url.path == "/metadata/identity/oauth2/token":
            return self.imds(method, query)
        if "/oauth2/v2.0/token" in url.path or "/.well-known/openid-configuration" in url.path:
            return self.token_endpoint(method, url.path, raw)
        self.arm(method, url.path, query, raw)

    # --- Entra ID -----------------------------------------------------------------------

    def token_endpoint(self, method, path, raw):
        st, args = self.state, self.state.args
        tenant = path.strip("/").split("/")[0]
        host = self.headers.get("Host")
        if path.endswith("/openid-configuration"):
            base = f"https://{host}/{tenant}"
            return self.send_json(200, {"token_endpoint": f"{base}/oauth2/v2.0/token", "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                                        "issuer": f"{base}/v2.0", "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                                        "end_session_endpoint": f"{base}/oauth2/v2.0/logout", "jwks_uri": f"{base}/discovery/v2.0/keys",
                                        "response_types_supported": ["code", "id_token", "token"], "tenant_region_scope": "WW"})
        form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        entry = {"tenant": tenant, "client_id": form.get("client_id"), "grant_type": form.get("grant_type"),
                 "scope": form.get("scope"), "assertion": "client_assertion" in form, "time": time.time()}
        status, body = 200, None
        if method != "POST" or form.get("grant_type") != "client_credentials":
            status, body = 400, {"error": "unsupported_grant_type", "error_description": "AADSTS70003: The app requested an unsupported grant type."}
        elif tenant != args.tenant:
            status, body = 400, {"error": "invalid_request", "error_description": f"AADSTS90002: Tenant '{tenant}' not found."}
        elif form.get("client_id") != args.client_id:
            status, body = 400, {"error": "unauthorized_client", "error_description": f"AADSTS700016: Application with identifier '{form.get('client_id')}' was not found in the directory."}
        elif "client_assertion" in form:
            if not args.federated_token or form.get("client_assertion") != args.federated_token:
                status, body = 401, {"error": "invalid_client", "error_description": "AADSTS700024: Client assertion is not within its valid time range."}
        elif form.get("client_secret") != args.client_secret:
            status, body = 401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}
        if not str(form.get("scope", "")).endswith("/.default") and status == 200:
            status, body = 400, {"error": "invalid_scope", "error_description": "AADSTS1002012: The provided value for scope is not valid."}
        if status == 200:
            token = "fake-" + uuid.uuid4().hex
            with st.lock:
                st.tokens_issued.add(token)
            body = {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}
        entry["status"] = status
        with st.lock:
            st.token_requests.append(entry)
        self.send_json(status, body)

    def imds(self, method, query):
        """The Instance Metadata Service's managed identity token (api-version 2018-02-01):
        a GET with `Metadata: true`, `resource` (not a scope), optional `client_id` of a
        user-assigned identity; `expires_in` is a string there."""
        st = self.state
        entry = {"tenant": None, "client_id": query.get("client_id"), "grant_type": "imds", "scope": query.get("resource"),
                 "assertion": False, "time": time.time()}
        if method != "GET" or self.headers.get("Metadata") != "true":
            status, body = 400, {"error": "invalid_request", "error_description": "Required metadata header not specified"}
        elif not query.get("resource"):
            status, body = 400, {"error": "invalid_request", "error_description": "Required query variable 'resource' is missing"}
        elif query.get("client_id") not in (None, st.args.client_id):
            status, body = 400, {"error": "invalid_request", "error_description": "Identity not found"}
        else:
            token = "fake-imds-" + uuid.uuid4().hex
            with st.lock:
                st.tokens_issued.add(token)
            status = 200
            body = {"access_token": token, "expires_in": "86399", "expires_on": str(int(time.time()) + 86399),
                    "resource": query["resource"], "token_type": "Bearer", "client_id": st.args.client_id}
        entry["status"] = status
        with st.lock:
            st.token_requests.append(entry)
        self.send_json(status, body)

    # --- control ------------------------------------------------------------------------

    def control(self, method, what, query, raw):
        st = self.state
        body = json.loads(raw) if raw else {}
        with st.lock:
            if what == "health":
                return self.send_json(200, {"ok": True})
            if what == "requests":
                if method == "DELETE":
                    st.requests.clear()
                    return self.send_json(200, {"ok": True})
                return self.send_json(200, st.requests)
            if what == "tokens":
                return self.send_json(200, st.token_requests)
            if what == "fail" and method == "POST":
                st.failures.append({"status": body["status"], "count": body.get("count", 1), "match": body.get("match", ""),
                                    "retry_after": body.get("retry_after"), "after_apply": body.get("after_apply", False)})
                return self.send_json(200, {"ok": True})
            kind = PRIVATE if body.get("private") or query.get("private") else PUBLIC
            if what == "recordsets" and method == "POST":
                z = st.find_zone(kind, st.args.subscription, st.args.resource_group, body["zone"])
                if z is None:
                    return self.send_json(404, {"error": "no such zone"})
                return self.send_json(200, st.store(z, body["type"].upper(), body["name"], body["properties"]))
            if what == "recordsets":
                z = st.find_zone(kind, st.args.subscription, st.args.resource_group, query.get("zone", ""))
                if z is None:
                    return self.send_json(404, {"error": "no such zone"})
                return self.send_json(200, sorted(z["sets"].values(), key=lambda s: (s["name"], s["type"])))
        self.send_json(404, {"error": f"unknown control endpoint {method} {what}"})

    # --- ARM ----------------------------------------------------------------------------

    def arm(self, method, path, query, raw):
        st = self.state
        entry = {"method": method, "path": path, "query": query, "authorization": self.headers.get("Authorization"),
                 "if_match": self.headers.get("If-Match"), "if_none_match": self.headers.get("If-None-Match"),
                 "body": json.loads(raw) if raw else None, "time": time.time()}
        failure = None
        with st.lock:
            for f in st.failures:
                if f["count"] > 0 and f["match"].lower() in path.lower():
                    f["count"] -= 1
                    failure = dict(f)
                    break
            st.failures = [f for f in st.failures if f["count"] > 0]
        if failure and not failure["after_apply"]:
            status, body, headers = self.injected(failure)
        else:
            try:
                status, body, headers = self.serve(method, path, query, raw)
            except ApiError as e:
                status, body, headers = e.status, {"error": {"code": e.code, "message": e.message}}, {}
            if failure:
                status, body, headers = self.injected(failure)
        entry["status"] = status
        with st.lock:
            st.requests.append(entry)
        self.send_json(status, body, headers)

    @staticmethod
    def injected(f):
        headers = {"Retry-After": str(f["retry_after"])} if f["status"] == 429 and f.get("retry_after") is not None else {}
        code = {429: "TooManyRequests", 500: "InternalServerError", 502: "BadGateway", 503: "ServiceUnavailable"}.get(f["status"], "Injected")
        return f["status"], {"error": {"code": code, "message": f"injected by the fake ({f['status']})"}}, headers

    def serve(self, method, path, query, raw):
        st = self.state
        auth = self.headers.get("Authorization") or ""
        if not auth.startswith("Bearer "):
            raise ApiError(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
        with st.lock:
            known = auth[len("Bearer "):] in st.tokens_issued
        if not known:
            raise ApiError(401, "InvalidAuthenticationToken", "The access token is invalid.")
        parts = [unquote(p) for p in path.strip("/").split("/")]
        low = [p.lower() for p in parts]
        if len(parts) < 4 or low[0] != "subscriptions" or "microsoft.network" not in low:
            raise ApiError(404, "InvalidResourceType", f"No route for {path}.")
        sub = parts[1]
        i = low.index("microsoft.network")
        rg = parts[3] if low[2] == "resourcegroups" else None
        kind = {"dnszones": PUBLIC, "privatednszones": PRIVATE}.get(low[i + 1] if len(low) > i + 1 else "")
        if kind is None:
            raise ApiError(404, "InvalidResourceType", f"The resource type '{parts[i + 1] if len(parts) > i + 1 else ''}' could not be found.")
        version = query.get("api-version")
        if not version:
            raise ApiError(400, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests.")
        if version not in API_VERSIONS[kind]:
            raise ApiError(400, "InvalidApiVersionParameter", f"The api-version '{version}' is invalid. The supported versions are '{', '.join(sorted(API_VERSIONS[kind]))}'.")
        if sub != st.args.subscription:
            raise ApiError(404, "SubscriptionNotFound", f"The subscription '{sub}' could not be found.")
        rest = parts[i + 2:]
        with st.lock:
            if not rest:
                if method != "GET":
                    raise ApiError(405, "MethodNotAllowed", "Zones are not managed through this fake.")
                zones = [z for z in st.zones.values() if z["kind"] == kind and (rg is None or z["rg"].lower() == rg.lower())]
                return self.page([st.zone_view(z) for z in sorted(zones, key=lambda z: z["name"])], query)
            if rg is None:
                raise ApiError(404, "InvalidResourceType", f"No route for {path}.")
            z = st.find_zone(kind, sub, rg, rest[0])
            if z is None:
                code = "ResourceNotFound" if len(rest) == 1 else "ParentResourceNotFound"
                raise ApiError(404, code, f"The Resource 'Microsoft.Network/{kind}/{rest[0]}' under resource group '{rg}' was not found.")
            if len(rest) == 1:
                return 200, st.zone_view(z), {}
            rtype = rest[1].upper()
            if len(rest) == 2 and rtype in ("ALL", "RECORDSETS"):
                return self.page(sorted(z["sets"].values(), key=lambda s: (s["name"], s["type"])), query)
            if rtype not in FIELDS[kind]:
                raise ApiError(400, "BadRequest", f"The record type '{rest[1]}' is not supported.")
            if len(rest) == 2:
                sets = [s for (t, _), s in z["sets"].items() if t == rtype]
                return self.page(sorted(sets, key=lambda s: s["name"]), query)
            if len(rest) != 3:
                raise ApiError(404, "InvalidResourceType", f"No route for {path}.")
            return self.record_set(method, z, rtype, rest[2], raw)

    def page(self, items, query):
        size = int(query.get("$top") or self.state.args.page_size)
        start = int(query.get("$skipToken") or 0)
        chunk = items[start:start + size]
        body = {"value": chunk}
        if start + size < len(items):
            q = {k: v for k, v in query.items() if k != "$skipToken"}
            q["$skipToken"] = str(start + size)
            qs = "&".join(f"{k}={v}" for k, v in q.items())
            body["nextLink"] = f"https://{self.headers.get('Host')}{urlsplit(self.path).path}?{qs}"
        return 200, body, {}

    def record_set(self, method, z, rtype, name, raw):
        st, kind = self.state, z["kind"]
        key = (rtype, name.lower())
        held = z["sets"].get(key)
        if_match, if_none = self.headers.get("If-Match"), self.headers.get("If-None-Match")
        if name != "@" and not NAME_RE.match(name.lower()):
            raise ApiError(400, "BadRequest", f"The record set name '{name}' is invalid.")
        if if_match is not None and (held is None or (if_match != "*" and if_match.strip('"') != held["etag"])):
            current = held["etag"] if held else "none"
            raise ApiError(412, "PreconditionFailed", f"The condition '{if_match}' in the If-Match header was not satisfied. The current was '{current}'.")
        if if_none == "*" and held is not None and method in ("PUT", "PATCH"):
            raise ApiError(412, "PreconditionFailed", f"The condition '*' in the If-None-Match header was not satisfied. The current was '{held['etag']}'.")
        if method == "GET":
            if held is None:
                raise ApiError(404, "NotFound", f"The resource record '{name}' does not exist in resource group '{z['rg']}' of subscription '{st.args.subscription}'.")
            return 200, held, {}
        if method == "DELETE":
            if rtype == "SOA" or (rtype == "NS" and name == "@"):
                raise ApiError(400, "BadRequest", f"The {rtype} record set at the zone apex cannot be deleted.")
            if held is None:
                return 204, None, {}
            del z["sets"][key]
            return 200, None, {}
        body = json.loads(raw) if raw else {}
        props = body.get("properties")
        if not isinstance(props, dict):
            raise ApiError(400, "BadRequest", "The request body must hold 'properties'.")
        if method == "PATCH":
            if held is None:
                raise ApiError(404, "NotFound", f"The resource record '{name}' does not exist.")
            merged = {k: v for k, v in held["properties"].items() if k not in ("fqdn", "provisioningState", "isAutoRegistered")}
            merged.update(props)
            props = merged
        validate_values(kind, rtype, props)
        if rtype == "SOA" and held is None:
            raise ApiError(400, "BadRequest", "An SOA record set cannot be created.")
        others = [t for (t, n) in z["sets"] if n == name.lower() and t != rtype]
        if (rtype == "CNAME" and others) or (rtype != "CNAME" and "CNAME" in others):
            raise ApiError(409, "Conflict", f"The record set '{name}' of type {rtype} conflicts with an existing record set: a CNAME record set cannot share its name with another record set.")
        stored = st.store(z, rtype, held["name"] if held else name, {k: v for k, v in props.items() if k not in ("fqdn", "provisioningState", "isAutoRegistered")})
        return (200 if held else 201), stored, {}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--tenant", required=True)
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--client-secret", required=True)
    ap.add_argument("--federated-token")
    ap.add_argument("--subscription", default="00000000-0000-0000-0000-000000000001")
    ap.add_argument("--resource-group", default="extdns")
    ap.add_argument("--zone", action="append", default=[])
    ap.add_argument("--private-zone", action="append", default=[])
    ap.add_argument("--page-size", type=int, default=100)
    args = ap.parse_args()
    state = State(args)
    for z in args.zone:
        state.add_zone(PUBLIC, z)
    for z in args.private_zone:
        state.add_zone(PRIVATE, z)
    Handler.state = state
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print(f"fake Azure on https://127.0.0.1:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
