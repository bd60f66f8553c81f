#!/usr/bin/env python3
"""Checks e2e/azure/fake.py against Microsoft's official Python SDKs (azure-identity,
azure-mgmt-dns, azure-mgmt-privatedns; pinned in e2e/azure/venv.sh): what the fake answers
must be what the real service answers to the real SDK. Run with the venv's python:

    $(e2e/azure/venv.sh) e2e/azure/sdk_check.py

It makes a throwaway CA (e2e/azure/certs.sh), starts the fake on a free port, and drives it:
a ClientSecretCredential whose authority is the fake, zones listed, record sets created with
If-None-Match: *, updated and deleted with the etag read, a 412 on a stale etag, nextLink
paging with $top, and a wrong client secret refused. Exit status 0 when every check holds;
the first failing check is printed.
"""

import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TENANT, CLIENT, SECRET = "72f988bf-0000-0000-0000-00000000tnt", "sdk-client", "sdk-secret"
SUB, RG = "00000000-0000-0000-0000-000000000001", "extdns"
ZONE, PRIVATE_ZONE = "sdk.example.com", "sdk.private.test"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def expect(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"ok: {what}", flush=True)


def status_of(call):
    from azure.core.exceptions import HttpResponseError
    try:
        call()
    except HttpResponseError as e:
        code = getattr(getattr(e, "error", None), "code", None)
        return e.status_code, code
    return 200, None


def check_public(cred, base, ca):
    from azure.mgmt.dns import DnsManagementClient
    from azure.mgmt.dns.models import ARecord, RecordSet, TxtRecord

    dns = DnsManagementClient(cred, SUB, base_url=base, connection_verify=ca)
    zones = [z.name for z in dns.zones.list_by_resource_group(RG)]
    expect(ZONE in zones, f"zones of the resource group are listed: {zones}")
    expect(ZONE in [z.name for z in dns.zones.list()], "zones of the subscription are listed")
    zone = dns.zones.get(RG, ZONE)
    expect("/providers/Microsoft.Network/dnszones/" in zone.id, f"zone ids spell dnszones as the service does: {zone.id}")

    created = dns.record_sets.create_or_update(RG, ZONE, "www", "A", RecordSet(ttl=300, a_records=[ARecord(ipv4_address="192.0.2.1")]), if_none_match="*")
    expect(created.etag and created.fqdn == f"www.{ZONE}.", f"create with If-None-Match: * answers an etag and fqdn ({created.fqdn})")
    again = status_of(lambda: dns.record_sets.create_or_update(RG, ZONE, "www", "A", RecordSet(ttl=60, a_records=[ARecord(ipv4_address="192.0.2.9")]), if_none_match="*"))
    expect(again == (412, "PreconditionFailed"), f"a second create with If-None-Match: * is refused: {again}")
    updated = dns.record_sets.create_or_update(RG, ZONE, "www", "A", RecordSet(ttl=60, a_records=[ARecord(ipv4_address="192.0.2.2")]), if_match=created.etag)
    expect(updated.etag != created.etag and updated.ttl == 60, "an update with the etag read succeeds and changes the etag")
    stale = status_of(lambda: dns.record_sets.create_or_update(RG, ZONE, "www", "A", RecordSet(ttl=60, a_records=[ARecord(ipv4_address="192.0.2.3")]), if_match=created.etag))
    expect(stale == (412, "PreconditionFailed"), f"an update with a stale etag is refused: {stale}")
    held = dns.record_sets.get(RG, ZONE, "www", "A")
    expect([a.ipv4_address for a in held.a_records] == ["192.0.2.2"], "the refused update changed nothing")

    long = "x" * 300
    dns.record_sets.create_or_update(RG, ZONE, "txt", "TXT", RecordSet(ttl=300, txt_records=[TxtRecord(value=[long[:255], long[255:]])]))
    txt = dns.record_sets.get(RG, ZONE, "txt", "TXT")
    expect("".join(txt.txt_records[0].value) == long, "TXT strings come back as written")
    dns.record_sets.create_or_update(RG, ZONE, "@", "A", RecordSet(ttl=300, a_records=[ARecord(ipv4_address="192.0.2.5")]))
    for i in range(5):
        dns.record_sets.create_or_update(RG, ZONE, f"r{i}", "A", RecordSet(ttl=300, a_records=[ARecord(ipv4_address=f"192.0.2.{10 + i}")]))
    paged = list(dns.record_sets.list_by_dns_zone(RG, ZONE, top=2))
    names = sorted((r.name, r.type.rsplit("/", 1)[-1]) for r in paged)
    expect(len(paged) == 10 and ("@", "SOA") in names and ("@", "NS") in names and ("r4", "A") in names,
           f"list_by_dns_zone pages through nextLink with $top=2: {names}")
    expect(len(list(dns.record_sets.list_all_by_dns_zone(RG, ZONE, top=3))) == 10, "list_all_by_dns_zone pages too")
    expect(len(list(dns.record_sets.list_by_type(RG, ZONE, "A", top=2))) == 7, "list_by_type lists the A record sets")

    conflict = status_of(lambda: dns.record_sets.create_or_update(RG, ZONE, "www", "CNAME", RecordSet(ttl=300, cname_record={"cname": "x.example.org"})))
    expect(conflict[0] == 409, f"a CNAME beside an A is refused: {conflict}")
    stale_delete = status_of(lambda: dns.record_sets.delete(RG, ZONE, "www", "A", if_match=created.etag))
    expect(stale_delete == (412, "PreconditionFailed"), f"a delete with a stale etag is refused: {stale_delete}")
    dns.record_sets.delete(RG, ZONE, "www", "A", if_match=updated.etag)
    gone = status_of(lambda: dns.record_sets.get(RG, ZONE, "www", "A"))
    expect(gone[0] == 404, f"a deleted record set is gone: {gone}")
    missing_zone = status_of(lambda: list(dns.record_sets.list_by_dns_zone(RG, "missing.example.com")))
    expect(missing_zone[0] == 404, f"record sets of a missing zone: {missing_zone}")


def check_private(cred, base, ca):
    from azure.core import MatchConditions
    from azure.mgmt.privatedns import PrivateDnsManagementClient
    from azure.mgmt.privatedns.models import ARecord, RecordSet, RecordSetProperties

    pdns = PrivateDnsManagementClient(cred, SUB, base_url=base, connection_verify=ca)
    zones = [z.name for z in pdns.private_zones.list_by_resource_group(RG)]
    expect(PRIVATE_ZONE in zones, f"private zones are listed: {zones}")
    body = RecordSet(properties=RecordSetProperties(ttl=300, a_records=[ARecord(ipv4_address="10.0.0.1")]))
    created = pdns.record_sets.create_or_update(RG, PRIVATE_ZONE, "A", "db", body, match_condition=MatchConditions.IfMissing)
    expect(created.etag and created.properties.fqdn == f"db.{PRIVATE_ZONE}.", "private create with If-None-Match: *")
    again = status_of(lambda: pdns.record_sets.create_or_update(RG, PRIVATE_ZONE, "A", "db", body, match_condition=MatchConditions.IfMissing))
    expect(again == (412, "PreconditionFailed"), f"a second private create is refused: {again}")
    body2 = RecordSet(properties=RecordSetProperties(ttl=60, a_records=[ARecord(ipv4_address="10.0.0.2")]))
    updated = pdns.record_sets.create_or_update(RG, PRIVATE_ZONE, "A", "db", body2, etag=created.etag, match_condition=MatchConditions.IfNotModified)
    expect(updated.properties.ttl == 60, "a private update with the etag read succeeds")
    stale = status_of(lambda: pdns.record_sets.create_or_update(RG, PRIVATE_ZONE, "A", "db", body, etag=created.etag, match_condition=MatchConditions.IfNotModified))
    expect(stale == (412, "PreconditionFailed"), f"a private update with a stale etag is refused: {stale}")
    for i in range(3):
        pdns.record_sets.create_or_update(RG, PRIVATE_ZONE, "A", f"r{i}", body)
    listed = list(pdns.record_sets.list(RG, PRIVATE_ZONE, top=2))
    expect(len(listed) == 5 and all(r.properties.ttl is not None for r in listed), f"private record sets page through nextLink: {[r.name for r in listed]}")
    ns = status_of(lambda: pdns.record_sets.create_or_update(RG, PRIVATE_ZONE, "NS", "sub", body))
    expect(ns[0] == 400, f"Private DNS holds no NS record sets: {ns}")
    pdns.record_sets.delete(RG, PRIVATE_ZONE, "A", "db", etag=updated.etag, match_condition=MatchConditions.IfNotModified)
    expect(status_of(lambda: pdns.record_sets.get(RG, PRIVATE_ZONE, "A", "db"))[0] == 404, "a deleted private record set is gone")


def main():
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import ClientSecretCredential

    scratch = tempfile.mkdtemp(prefix="extdns-azure-sdk-")
    subprocess.run(["bash", os.path.join(HERE, "certs.sh"), scratch], check=True)
    ca = os.path.join(scratch, "ca.pem")
    # MSAL's token requests go through requests, which trusts this bundle.
    os.environ["REQUESTS_CA_BUNDLE"] = ca
    port = free_port()
    log = open(os.path.join(scratch, "fake.log"), "w")
    fake = subprocess.Popen([sys.executable, os.path.join(HERE, "fake.py"), "--port", str(port), "--cert", os.path.join(scratch, "server.pem"),
                             "--key", os.path.join(scratch, "server.key"), "--tenant", TENANT, "--client-id", CLIENT, "--client-secret", SECRET,
                             "--subscription", SUB, "--resource-group", RG, "--zone", ZONE, "--private-zone", PRIVATE_ZONE], stdout=log, stderr=log)
    base = f"https://127.0.0.1:{port}"
    try:
        deadline = time.time() + 20
        while True:
            try:
                urllib.request.urlopen(f"{base}/__fake/health", context=ssl.create_default_context(cafile=ca), timeout=2)
                break
            except Exception:
                if time.time() > deadline or fake.poll() is not None:
                    raise RuntimeError("the fake did not start; see " + log.name)
                time.sleep(0.1)
        cred = ClientSecretCredential(TENANT, CLIENT, SECRET, authority=base, disable_instance_discovery=True, connection_verify=ca)
        check_public(cred, base, ca)
        check_private(cred, base, ca)
        wrong = ClientSecretCredential(TENANT, CLIENT, "not-the-secret", authority=base, disable_instance_discovery=True, connection_verify=ca)
        try:
            wrong.get_token("https://management.azure.com/.default")
            expect(False, "a wrong client secret is refused")
        except ClientAuthenticationError as e:
            expect("AADSTS7000215" in str(e), "a wrong client secret is refused with AADSTS7000215")
        print("sdk_check: all checks passed", flush=True)
    except Exception as e:
        print(f"sdk_check FAILED: {type(e).__name__}: {e}", flush=True)
        log.flush()
        print("--- fake log (tail) ---\n" + "".join(open(log.name).readlines()[-30:]), flush=True)
        return 1
    finally:
        fake.terminate()
        fake.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
