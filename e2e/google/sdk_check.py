#!/usr/bin/env python3
"""Checks e2e/google/fake.py against Google's official Python SDK: the fake must answer what the
real Cloud DNS answers to the real client. Run with the venv of e2e/google/venv.sh:

    "$(bash e2e/google/venv.sh)" e2e/google/sdk_check.py

Starts the fake on a free port, asks it for a throwaway service-account key (token_uri: the
fake), and drives it with google-auth (JWT-bearer grant) and google-api-python-client
(discovery document dns.v1 as shipped, `client_options={"api_endpoint": ...}`): list zones,
changes with additions and deletions together, paging through record sets, an addition that
exists (409 alreadyExists), deletions that do not match (412 conditionNotMet, 404 notFound), an
atomic change that fails as a whole, a body the schema refuses, a key the token endpoint
refuses. Prints one line per check and "N passed, M failed"; exits non-zero on a failure.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import google.auth.exceptions
from google.oauth2 import service_account
from googleapiclient import discovery
from googleapiclient.errors import HttpError

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = "sdk-check"
ZONE = "sdk-zone"
DNS_NAME = "sdk.example.test."
SCOPES = ["https://www.googleapis.com/auth/ndev.clouddns.readwrite"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def control(base, path, body=None):
    req = urllib.request.Request(
        f"{base}/__fake/{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def start_fake():
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="fake-clouddns-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "fake.py"), "--port", str(port), "--project", PROJECT,
         "--zone", f"{PROJECT}/{ZONE}={DNS_NAME}", "--zone", f"{PROJECT}/private-zone=internal.example.test./private",
         "--page-size", "40"],
        stdout=log, stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            control(base, "health")
            return proc, base, log.name
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    proc.kill()
    sys.exit(f"the fake did not start; log:\n{open(log.name).read()}")


def dns_client(base, key):
    path = os.path.join(tempfile.mkdtemp(prefix="sdk-check-"), "key.json")
    with open(path, "w") as f:
        json.dump(key, f)
    creds = service_account.Credentials.from_service_account_file(path, scopes=SCOPES)
    return discovery.build(
        "dns", "v1", credentials=creds, client_options={"api_endpoint": base + "/"}, static_discovery=True,
        cache_discovery=False,
    )


def reason(e):
    try:
        return json.loads(e.content)["error"]["errors"][0]["reason"]
    except (ValueError, KeyError, IndexError):
        return None


def rrset(name, rtype, ttl, *rrdatas):
    return {"kind": "dns#resourceRecordSet", "name": name, "type": rtype, "ttl": ttl, "rrdatas": list(rrdatas)}


def main():
    proc, base, log = start_fake()
    results = []

    def check(name, fn):
        try:
            fn()
            results.append((name, None))
            print(f"ok     {name}")
        except Exception as e:  # noqa: BLE001 - every failure is reported, then the next check runs
            results.append((name, e))
            print(f"FAILED {name}: {type(e).__name__}: {e}")

    try:
        key = control(base, "keys", {"email": "extdns@sdk-check.iam.gserviceaccount.com", "project": PROJECT})
        dns = dns_client(base, key)
        changes = dns.changes()
        rrsets = dns.resourceRecordSets()

        def list_zones():
            r = dns.managedZones().list(project=PROJECT).execute()
            assert r["kind"] == "dns#managedZonesListResponse", r
            by_name = {z["name"]: z for z in r["managedZones"]}
            assert by_name[ZONE]["dnsName"] == DNS_NAME and by_name[ZONE]["kind"] == "dns#managedZone", r
            assert by_name["private-zone"]["visibility"] == "private", r
            one = dns.managedZones().list(project=PROJECT, dnsName=DNS_NAME).execute()
            assert [z["name"] for z in one["managedZones"]] == [ZONE], one
            tokens = control(base, "tokens")
            assert tokens and tokens[-1]["email"] == key["client_email"] and tokens[-1]["via"] == "jwt-bearer", tokens

        def project_quota():
            r = dns.projects().get(project=PROJECT).execute()
            assert r["kind"] == "dns#project" and r["quota"]["kind"] == "dns#quota", r
            assert r["quota"]["rrsetAdditionsPerChange"] == 1000 and r["quota"]["totalRrdataSizePerChange"] == 100000, r

        def create_then_done():
            c = changes.create(project=PROJECT, managedZone=ZONE, body={
                "additions": [rrset(f"www.{DNS_NAME}", "A", 300, "192.0.2.1"),
                              rrset(f"www.{DNS_NAME}", "TXT", 300, '"heritage=external-dns,external-dns/owner=default"')],
            }).execute()
            assert c["kind"] == "dns#change" and c["status"] == "pending" and c["id"], c
            assert c["additions"][0]["kind"] == "dns#resourceRecordSet", c
            g = changes.get(project=PROJECT, managedZone=ZONE, changeId=c["id"]).execute()
            assert g["status"] == "done", g

        def additions_and_deletions_together():
            c = changes.create(project=PROJECT, managedZone=ZONE, body={
                "deletions": [rrset(f"www.{DNS_NAME}", "A", 300, "192.0.2.1")],
                "additions": [rrset(f"www.{DNS_NAME}", "A", 60, "192.0.2.2", "192.0.2.3")],
            }).execute()
            assert len(c["additions"]) == 1 and len(c["deletions"]) == 1, c
            r = rrsets.list(project=PROJECT, managedZone=ZONE, name=f"www.{DNS_NAME}", type="A").execute()
            assert [(x["ttl"], sorted(x["rrdatas"])) for x in r["rrsets"]] == [(60, ["192.0.2.2", "192.0.2.3"])], r

        def paging():
            adds = [rrset(f"h{i:03}.{DNS_NAME}", "A", 300, f"192.0.2.{i % 250 + 1}") for i in range(150)]
            changes.create(project=PROJECT, managedZone=ZONE, body={"additions": adds}).execute()
            req = rrsets.list(project=PROJECT, managedZone=ZONE, maxResults=25)
            seen, pages = [], 0
            while req is not None:
                resp = req.execute()
                assert resp["kind"] == "dns#resourceRecordSetsListResponse", resp
                seen += resp["rrsets"]
                pages += 1
                req = rrsets.list_next(req, resp)
            # 150 hosts, www A and TXT, the apex SOA and NS.
            assert len(seen) == 154 and pages == 7, (len(seen), pages)
            assert len({(r["name"], r["type"]) for r in seen}) == 154
            req, default_pages = rrsets.list(project=PROJECT, managedZone=ZONE), 0
            while req is not None:
                resp = req.execute()
                default_pages += 1
                req = rrsets.list_next(req, resp)
            assert default_pages == 4, default_pages  # --page-size 40 without maxResults

        def already_exists():
            try:
                changes.create(project=PROJECT, managedZone=ZONE, body={
                    "additions": [rrset(f"www.{DNS_NAME}", "A", 300, "192.0.2.9")]}).execute()
            except HttpError as e:
                assert e.resp.status == 409 and reason(e) == "alreadyExists", (e.resp.status, e.content)
                assert "entity.change.additions[0]" in str(e), str(e)
                return
            raise AssertionError("an addition of an existing record set was accepted")

        def deletion_not_matching():
            for body, status, why in [
                ({"deletions": [rrset(f"www.{DNS_NAME}", "A", 300, "192.0.2.2", "192.0.2.3")]}, 412, "conditionNotMet"),
                ({"deletions": [rrset(f"www.{DNS_NAME}", "A", 60, "192.0.2.2")]}, 412, "conditionNotMet"),
                ({"deletions": [rrset(f"nothing.{DNS_NAME}", "A", 60, "192.0.2.2")]}, 404, "notFound"),
            ]:
                try:
                    changes.create(project=PROJECT, managedZone=ZONE, body=body).execute()
                except HttpError as e:
                    assert e.resp.status == status and reason(e) == why, (body, e.resp.status, e.content)
                    assert "entity.change.deletions[0]" in str(e), str(e)
                    continue
                raise AssertionError(f"a non-matching deletion was accepted: {body}")
            # Order does not matter within an rrset.
            changes.create(project=PROJECT, managedZone=ZONE, body={
                "deletions": [rrset(f"www.{DNS_NAME}", "A", 60, "192.0.2.3", "192.0.2.2")],
                "additions": [rrset(f"www.{DNS_NAME}", "A", 60, "192.0.2.4")]}).execute()

        def atomic():
            before = rrsets.list(project=PROJECT, managedZone=ZONE, name=f"www.{DNS_NAME}").execute()["rrsets"]
            try:
                changes.create(project=PROJECT, managedZone=ZONE, body={
                    "deletions": [rrset(f"www.{DNS_NAME}", "A", 60, "192.0.2.4")],
                    "additions": [rrset(f"new.{DNS_NAME}", "A", 60, "192.0.2.5"),
                                  rrset(f"www.{DNS_NAME}", "TXT", 60, '"again"')]}).execute()
            except HttpError as e:
                assert e.resp.status == 409 and "entity.change.additions[1]" in str(e), e.content
            else:
                raise AssertionError("a change with a conflicting addition was accepted")
            after = rrsets.list(project=PROJECT, managedZone=ZONE, name=f"www.{DNS_NAME}").execute()["rrsets"]
            assert after == before, (before, after)
            new = rrsets.list(project=PROJECT, managedZone=ZONE, name=f"new.{DNS_NAME}").execute()["rrsets"]
            assert new == [], new

        def cname_conflict():
            try:
                changes.create(project=PROJECT, managedZone=ZONE, body={
                    "additions": [rrset(f"www.{DNS_NAME}", "CNAME", 60, f"h001.{DNS_NAME}")]}).execute()
            except HttpError as e:
                assert e.resp.status == 400 and reason(e) == "cnameResourceRecordSetConflict", e.content
                return
            raise AssertionError("a CNAME beside an A was accepted")

        def schema_refuses_unknown_fields():
            req = changes.create(project=PROJECT, managedZone=ZONE, body={"additions": [
                {"name": f"x.{DNS_NAME}", "type": "A", "ttl": 60, "rrdatas": ["192.0.2.1"], "weight": 3}]})
            try:
                req.execute()
            except HttpError as e:
                assert e.resp.status == 400 and "Unknown name" in str(e), e.content
                return
            raise AssertionError("an unknown field was accepted")

        def outside_the_zone():
            try:
                changes.create(project=PROJECT, managedZone=ZONE, body={
                    "additions": [rrset("stray.invalid.", "A", 60, "192.0.2.1")]}).execute()
            except HttpError as e:
                assert e.resp.status == 400, e.content
                return
            raise AssertionError("a name outside the zone was accepted")

        def refused_key():
            other = control(base, "keys", {"email": "other@sdk-check.iam.gserviceaccount.com", "project": PROJECT})
            forged = dict(key, private_key=other["private_key"], private_key_id=other["private_key_id"])
            try:
                dns_client(base, forged).managedZones().list(project=PROJECT).execute()
            except google.auth.exceptions.RefreshError as e:
                assert "invalid_grant" in str(e), str(e)
                return
            raise AssertionError("a JWT signed with another account's key was accepted")

        def forbidden_project():
            stranger = control(base, "keys", {"email": "stranger@elsewhere.iam.gserviceaccount.com", "project": PROJECT, "grant": False})
            try:
                dns_client(base, stranger).managedZones().list(project=PROJECT).execute()
            except HttpError as e:
                assert e.resp.status == 403, e.content
                return
            raise AssertionError("an identity without a grant listed the project's zones")

        for name, fn in [
            ("managedZones.list", list_zones),
            ("projects.get quota", project_quota),
            ("changes.create pending, changes.get done", create_then_done),
            ("changes.create additions + deletions", additions_and_deletions_together),
            ("resourceRecordSets.list paging", paging),
            ("409 alreadyExists", already_exists),
            ("412 conditionNotMet / 404 notFound deletions", deletion_not_matching),
            ("a change is atomic", atomic),
            ("400 cnameResourceRecordSetConflict", cname_conflict),
            ("400 unknown field", schema_refuses_unknown_fields),
            ("400 name outside the zone", outside_the_zone),
            ("token endpoint refuses a forged JWT", refused_key),
            ("403 without a grant", forbidden_project),
        ]:
            check(name, fn)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    failed = [n for n, e in results if e is not None]
    if failed:
        print(f"--- fake log ---\n{open(log).read()[-6000:]}")
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
