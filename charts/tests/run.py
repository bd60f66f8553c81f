"""Tests of charts/extdns with the real Helm engine (helm-python-sdk embeds Helm v4's Go SDK).

Offline: the chart's CRDs are crds/'s, lint, golden renders of tests/values/*.yaml, values
that must fail with a message, every rendered flag exists in `extdns run --help`, and the
Deployment runs extdns as config/manager and the e2e harness do (arguments, ServiceAccount,
RBAC). With --cluster: install into the cluster of $KUBECONFIG, wait for the objects,
upgrade with changed values, uninstall (CRDs stay).

UPDATE_GOLDEN=1 rewrites the golden files instead of comparing them.

--render VALUES_FILE [--set-json JSON]... [--release R] [--namespace NS] only prints the
manifests the values render to (no checks): tests/e2e/chart.rs runs them.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

import helm_python as helm
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "extdns"
VALUES_DIR = CHART / "tests" / "values"
GOLDEN_DIR = CHART / "tests" / "golden"
RELEASE = "extdns"
NAMESPACE = "extdns"

# A values file extdns has no meaning for must fail, saying what to use instead.
MUST_FAIL = [
    ({"provider": {"name": "digitalocean"}}, "set provider.name webhook"),
    ({"sources": ["istio-gateway"]}, "is not an extdns source"),
    ({"registry": "dynamodb"}, "registry: noop"),
    ({"interval": "30s"}, "at least 1m"),
    ({"interval": "48h"}, "at most 24h"),
    ({"txtPrefix": "a-", "txtSuffix": "-b"}, "set only one"),
    ({"secretConfiguration": {"enabled": True}}, "valueFrom.secretKeyRef"),
    ({"image": {"repository": "registry.k8s.io/external-dns/external-dns"}}, "extdns image"),
    ({"extraArgs": ["--txt-cache-interval=1h"]}, "extdns has no such setting"),
    ({"extraArgs": ["--metrics-address=:7979"]}, "extdns has no such setting"),
    ({"extraArgs": ["--metrics-addr=:7979"]}, "use service.port"),
    ({"extraArgs": ["--aws-zone-type=public"], "provider": {"name": "rfc2136"}}, "belongs to another provider"),
    ({"extraArgs": ["--txt-encrypt-aes-key=x"]}, "registry.txt.encryption.secretRef"),
    ({"env": [{"name": "CF_API_KEY", "value": "k"}], "provider": {"name": "cloudflare"}}, "API token only"),
    ({"provider": {"name": "cloudflare"}}, "CF_API_TOKEN"),
    ({"provider": {"name": "rfc2136"}, "extraArgs": ["--rfc2136-zone=example.org"]}, "one --rfc2136-host"),
    (
        {"provider": {"name": "rfc2136"}, "extraArgs": ["--rfc2136-host=ns", "--rfc2136-zone=z", "--rfc2136-tsig-axfr=false"]},
        "signs zone transfers",
    ),
    ({"provider": {"name": "webhook"}}, "provider.webhook.image.repository"),
    ({"provider": {"name": "aws", "webhook": {"image": {"repository": "r"}}}}, "set provider.name webhook"),
    ({"logLevel": "verbose"}, "logLevel"),
    # Google: the key file must come from a Secret volume the chart can name.
    (
        {"provider": {"name": "google"}, "env": [{"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/etc/gcp/key.json"}]},
        "extdns.clusterDNSProvider.spec.google.credentials.secretRef",
    ),
    (
        {"provider": {"name": "google"}, "env": [{"name": "GOOGLE_APPLICATION_CREDENTIALS", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]},
        "mounted from a Secret",
    ),
    ({"provider": {"name": "aws"}, "env": [{"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/k.json"}]}, "is for provider google"),
    ({"provider": {"name": "google"}, "extraArgs": ["--google-zone-visibility=internal"]}, "public or private"),
    ({"provider": {"name": "google"}, "extraArgs": ["--aws-batch-change-size=10"]}, "belongs to another provider"),
    ({"provider": {"name": "aws"}, "extraArgs": ["--google-project=p"]}, "belongs to another provider"),
    ({"provider": {"name": "google"}, "extraArgs": ["--google-project=p", "--google-foo=1"]}, "extdns has no such setting"),
    # Azure: azure.json from a Secret, or the pod's identity with a subscription.
    ({"provider": {"name": "azure"}}, "needs --azure-subscription-id"),
    (
        {"provider": {"name": "azure-private-dns"}, "extraArgs": ["--azure-config-file=/etc/azure/azure.json"]},
        "extdns.clusterDNSProvider.spec.azurePrivateDns.credentials",
    ),
    ({"provider": {"name": "azure"}, "extraArgs": ["--azure-subscription-id=s", "--azure-zones-cache-duration=5m"]}, "resyncInterval"),
    ({"provider": {"name": "cloudflare"}, "extraArgs": ["--azure-resource-group=rg"]}, "belongs to another provider"),
    ({"notAValue": 1}, "notAValue"),
]


class Checks:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def run(self, name: str, fn) -> None:
        try:
            fn()
        except Exception as e:  # every failure is reported, the other checks still run
            self.failed += 1
            detail = str(e) if isinstance(e, AssertionError) else traceback.format_exc()
            print(f"FAIL {name}: {detail}", flush=True)
        else:
            self.passed += 1
            print(f"ok   {name}", flush=True)


def docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def load_values(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def render(chart: helm.Chart, values: dict, name: str = RELEASE, namespace: str = NAMESPACE) -> dict[str, str]:
    return chart.render(values, name=name, namespace=namespace, is_install=True)


def objects(rendered: dict[str, str]) -> list[dict]:
    return [d for _, text in sorted(rendered.items()) for d in docs(text)]


def one(objs: list[dict], kind: str) -> dict:
    found = [o for o in objs if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


# --- offline checks -------------------------------------------------------------------------


def check_crds() -> None:
    ours = (CHART / "crds" / "extdns.io.yaml").read_text()
    theirs = (REPO / "crds" / "extdns.io.yaml").read_text()
    assert ours == theirs, "charts/extdns/crds/extdns.io.yaml differs from crds/extdns.io.yaml: run `make chart-crds`"


def check_lint(values: dict) -> None:
    report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE, kube_version="v1.20.2")
    bad = [m for m in report["messages"] if m["severity"] >= 2] + [{"error": e} for e in report["errors"]]
    assert not bad, f"helm lint: {bad}"


def golden_text(rendered: dict[str, str]) -> str:
    parts = []
    for path, text in sorted(rendered.items()):
        if text.strip():
            parts.append(f"# Source: {path}\n{text.strip()}\n")
    return "---\n".join(parts)


def check_golden(chart: helm.Chart, values_file: Path) -> None:
    text = golden_text(render(chart, load_values(values_file)))
    golden = GOLDEN_DIR / values_file.name
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
        return
    assert golden.exists(), f"{golden} missing: run with UPDATE_GOLDEN=1 and review it"
    want = golden.read_text()
    if text != want:
        diff = "".join(difflib.unified_diff(want.splitlines(True), text.splitlines(True), str(golden), "rendered"))
        raise AssertionError(f"render differs from {golden.name} (UPDATE_GOLDEN=1 after review):\n{diff}")


def check_fails(chart: helm.Chart, values: dict, message: str) -> None:
    try:
        render(chart, values)
    except helm.HelmError as e:
        assert message in str(e), f"failed, but without {message!r}: {e}"
        return
    raise AssertionError(f"values {values} rendered; they must fail with {message!r}")


def check_cloud_credentials(chart: helm.Chart) -> None:
    """What the Google and Azure values become besides the golden files: no key file is the
    pod's own identity; a key under a subPath mount or renamed by the volume's items is found."""

    def spec(values: dict) -> dict:
        return one(objects(render(chart, values)), "ClusterDNSProvider")["spec"]

    assert spec({"provider": {"name": "google"}})["google"] == {}, "google without a key: the pod's identity"
    got = spec({
        "provider": {"name": "google"},
        "env": [{"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/var/secrets/google/key.json"}],
        "extraVolumes": [{"name": "g", "secret": {"secretName": "gsa", "items": [{"key": "sa.json", "path": "key.json"}]}}],
        "extraVolumeMounts": [{"name": "g", "mountPath": "/var/secrets/google"}],
        "extraArgs": ["--zone-id-filter=my-zone"],
    })["google"]
    assert got == {"credentials": {"secretRef": {"name": "gsa", "key": "sa.json"}}, "zones": ["my-zone"]}, got
    got = spec({
        "provider": {"name": "google"},
        "env": [{"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/etc/gcp/key.json"}],
        "extdns": {"clusterDNSProvider": {"spec": {"google": {"credentials": {"secretRef": {"name": "mine"}}}}}},
    })["google"]
    assert got == {"credentials": {"secretRef": {"name": "mine"}}}, got
    got = spec({
        "provider": {"name": "azure-private-dns"},
        "extraVolumes": [{"name": "cfg", "secret": {"secretName": "azure-config-file"}}],
        "extraVolumeMounts": [{"name": "cfg", "mountPath": "/etc/kubernetes/azure.json", "subPath": "config.json"}],
    })
    assert "azure" not in got, got
    assert got["azurePrivateDns"] == {"credentials": {"azureConfigSecretRef": {"name": "azure-config-file", "key": "config.json"}}}, got
    got = spec({"provider": {"name": "azure"}, "extraArgs": ["--azure-subscription-id=s"]})["azure"]
    assert got == {"subscriptionId": "s"}, "azure without azure.json: the pod's identity"


def run_help(binary: str) -> dict[str, str]:
    """Flag name -> 'switch', 'value' or 'optional' (e.g. --leader-elect[=<LEADER_ELECT>])."""
    out = subprocess.run([binary, "run", "--help"], check=True, capture_output=True, text=True).stdout
    flags = {}
    for m in re.finditer(r"^\s+(?:-\w, )?--([a-z0-9-]+)(\[=<[A-Z_]+>\]| <[A-Z_]+>)?", out, re.M):
        form = m.group(2) or ""
        flags[m.group(1)] = "optional" if form.startswith("[") else "value" if form else "switch"
    assert "source" in flags and "leader-elect" in flags, f"unexpected `extdns run --help`:\n{out}"
    env = dict(re.findall(r"--([a-z0-9-]+)\b[^\n]*(?:\n(?!\s+-)[^\n]*)*?\[env: ([A-Z_]+)=", out))
    flags["_env"] = env  # type: ignore[assignment]
    return flags


def check_flags(chart: helm.Chart, values_file: Path, help_flags: dict) -> None:
    dep = one(objects(render(chart, load_values(values_file))), "Deployment")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "run", f"first argument {args[0]!r}, not run"
    for arg in args[1:]:
        m = re.fullmatch(r"--([a-z0-9-]+)(=.*)?", arg, re.S)
        assert m, f"{arg!r} is not a --flag"
        name, value = m.group(1), m.group(2)
        assert name in help_flags, f"{arg}: `extdns run --help` has no --{name}"
        form = help_flags[name]
        assert not (form == "switch" and value), f"{arg}: --{name} takes no value"
        assert not (form == "value" and not value), f"{arg}: --{name} needs a value"


def check_runs_as_shipped(chart: helm.Chart, help_flags: dict) -> None:
    """The Deployment runs extdns as config/manager/deployment.yaml does, with the identity
    the e2e harness gives it (tests/e2e/identity.rs: config/rbac's rules on one ServiceAccount;
    harness.rs: run --leader-elect, --operator-namespace and --identity)."""
    objs = objects(render(chart, {}))
    dep = one(objs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    container = pod["containers"][0]
    shipped = docs((REPO / "config/manager/deployment.yaml").read_text())[0]
    shipped_c = shipped["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][: len(shipped_c["args"])] == shipped_c["args"], (
        f"args {container['args']} do not start as config/manager's {shipped_c['args']}"
    )
    for var in shipped_c["env"]:
        assert var in container["env"], f"env {var} of config/manager missing"
    # The harness passes --operator-namespace and --identity; the Deployment gives them
    # through the environment those flags read.
    env_of = help_flags["_env"]
    assert env_of.get("operator-namespace") == "POD_NAMESPACE", env_of
    assert env_of.get("identity") == "POD_NAME", env_of
    for port in container["ports"]:
        assert port.get("protocol"), f"container port {port['name']} without protocol (server-side apply on 1.20)"
    # RBAC: exactly config/rbac's rules, bound to the ServiceAccount the pod runs as.
    sa = one(objs, "ServiceAccount")["metadata"]["name"]
    assert pod["serviceAccountName"] == sa, f"pod runs as {pod['serviceAccountName']}, chart makes {sa}"
    shipped_rbac = {d["kind"]: d for d in docs((REPO / "config/rbac/role.yaml").read_text())}
    for kind in ("ClusterRole", "Role"):
        ours = one(objs, kind)["rules"]
        assert ours == shipped_rbac[kind]["rules"], f"{kind} rules differ from config/rbac/role.yaml"
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        b = one(objs, kind)
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}], b["subjects"]
        assert b["roleRef"]["name"] == one(objs, b["roleRef"]["kind"])["metadata"]["name"]
    svc = one(objs, "Service")
    for port in svc["spec"]["ports"]:
        assert port.get("protocol"), f"Service port {port['name']} without protocol (server-side apply on 1.20)"
        assert port["targetPort"] in [p["name"] for p in container["ports"]], port
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items(), "the Service selects no extdns pod"


def check_pdb(chart: helm.Chart) -> None:
    # Offline, Helm's default capabilities serve policy/v1: two replicas get a PDB, one none.
    kinds = [o["kind"] for o in objects(render(chart, {}))]
    assert "PodDisruptionBudget" in kinds, kinds
    kinds = [o["kind"] for o in objects(render(chart, {"replicaCount": 1}))]
    assert "PodDisruptionBudget" not in kinds, kinds


# --- cluster checks -------------------------------------------------------------------------

CLUSTER_RELEASE = "chart-e2e"
CLUSTER_NS = "extdns-chart-e2e"


def kubectl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["kubectl", *args], check=check, capture_output=True, text=True)


def get(kind: str, name: str, namespace: str | None) -> dict | None:
    args = ["get", kind, name, "-o", "json"] + (["-n", namespace] if namespace else [])
    r = kubectl(*args, check=False)
    if r.returncode != 0:
        assert "NotFound" in r.stderr, r.stderr
        return None
    return json.loads(r.stdout)


def wait_for(what: str, cond, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def kind_ref(obj: dict) -> str:
    group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
    return f"{obj['kind'].lower()}.{group}" if group else obj["kind"].lower()


def wait_objects(manifest: str) -> list[dict]:
    objs = docs(manifest)
    for o in objs:
        ns = o["metadata"].get("namespace")
        wait_for(f"{o['kind']} {o['metadata']['name']}", lambda o=o, ns=ns: get(kind_ref(o), o["metadata"]["name"], ns))
    return objs


def cluster_values() -> dict:
    """The RFC2136 external-dns values file, with a ClusterDNSProvider that admits no
    namespace: nothing the e2e suite runs later may be served by it."""
    values = load_values(VALUES_DIR / "external-dns-rfc2136.yaml")
    values["extdns"] = {"clusterDNSProvider": {"spec": {"namespaceSelector": {"matchLabels": {"extdns-chart-test": "none"}}}}}
    return values


def kept(rendered, served, path: str = "spec") -> None:
    """Every field rendered is in what the apiserver returns (the 1.20 apiserver prunes
    fields its schema lacks instead of refusing them)."""
    if isinstance(rendered, dict):
        assert isinstance(served, dict), f"{path}: served {served!r}"
        for k, v in rendered.items():
            assert k in served, f"{path}.{k} pruned by the apiserver: not in the CRD"
            kept(v, served[k], f"{path}.{k}")
    else:
        assert rendered == served, f"{path}: rendered {rendered!r}, served {served!r}"


def check_provider_valid(chart: helm.Chart, values_file: Path) -> None:
    """The ClusterDNSProvider a values file renders passes the CRD's validation (server-side
    dry run: nothing is stored) and keeps every field."""
    objs = [o for o in objects(render(chart, load_values(values_file))) if o["kind"] == "ClusterDNSProvider"]
    for o in objs:
        r = subprocess.run(["kubectl", "create", "--dry-run=server", "-o", "json", "-f", "-"],
                           input=json.dumps(o), capture_output=True, text=True)
        assert r.returncode == 0, f"apiserver refused the ClusterDNSProvider of {values_file.name}: {r.stderr}"
        kept(o["spec"], json.loads(r.stdout)["spec"])


def cluster_checks(checks: Checks) -> None:
    served = kubectl("api-versions").stdout.split()
    with helm.Config(namespace=CLUSTER_NS) as cfg, helm.Chart.load(str(CHART)) as chart:
        # A namespace left terminating by an earlier run would refuse the install.
        cfg.uninstall(CLUSTER_RELEASE, ignore_not_found=True, wait="legacy", timeout=120)
        kubectl("delete", "namespace", CLUSTER_NS, "--ignore-not-found", "--timeout=120s")
        state: dict = {}

        def install() -> None:
            rel = cfg.install(chart, CLUSTER_RELEASE, cluster_values(), namespace=CLUSTER_NS, create_namespace=True, timeout=120)
            state["objs"] = wait_objects(rel["manifest"])
            for crd in ("dnsendpoints.extdns.io", "dnsproviders.extdns.io", "clusterdnsproviders.extdns.io"):
                wait_for(f"CRD {crd} established", lambda crd=crd: any(
                    c["type"] == "Established" and c["status"] == "True"
                    for c in (get("crd", crd, None) or {}).get("status", {}).get("conditions", [])))
            kinds = {o["kind"] for o in state["objs"]}
            want = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service", "Deployment", "ClusterDNSProvider"}
            assert want <= kinds, f"installed {sorted(kinds)}, missing {sorted(want - kinds)}"
            # The PodDisruptionBudget exactly where policy/v1 is served (not on 1.20).
            assert ("PodDisruptionBudget" in kinds) == ("policy/v1" in served), (kinds, "policy/v1" in served)

        def server_state() -> None:
            fullname = f"{CLUSTER_RELEASE}-extdns"
            cdnsp = get("clusterdnsprovider", fullname, None)
            assert cdnsp["spec"]["rfc2136"]["tsig"]["secretRef"] == {"name": "rfc2136-keys", "key": "rfc2136-tsig-secret"}, cdnsp["spec"]
            assert cdnsp["spec"]["policy"] == "sync" and cdnsp["spec"]["registry"]["txt"]["ownerId"] == "k8s", cdnsp["spec"]
            dep = get("deployment", fullname, CLUSTER_NS)
            assert dep["spec"]["template"]["spec"]["serviceAccountName"] == fullname
            assert dep["spec"]["replicas"] == 2

        def upgrade() -> None:
            values = cluster_values()
            values["replicaCount"] = 1
            values["domainFilters"] = ["example.net"]
            values["env"] = []
            values["extraArgs"] = [a.replace("example.org", "example.net") for a in values["extraArgs"]] + [
                "--rfc2136-tsig-secret=c2VjcmV0LXNlY3JldC1zZWNyZXQ="
            ]
            rel = cfg.upgrade(chart, CLUSTER_RELEASE, values, namespace=CLUSTER_NS, timeout=120)
            assert rel["revision"] == 2, rel["revision"]
            state["objs"] = wait_objects(rel["manifest"])
            fullname = f"{CLUSTER_RELEASE}-extdns"
            wait_for("Deployment scaled to 1", lambda: get("deployment", fullname, CLUSTER_NS)["spec"]["replicas"] == 1)
            cdnsp = get("clusterdnsprovider", fullname, None)
            assert cdnsp["spec"]["domains"]["include"] == ["example.net"], cdnsp["spec"]
            assert cdnsp["spec"]["rfc2136"]["zones"] == ["example.net"], cdnsp["spec"]
            assert cdnsp["spec"]["rfc2136"]["tsig"]["secretRef"] == {"name": f"{fullname}-credentials", "key": "rfc2136-tsig-secret"}
            assert get("secret", f"{fullname}-credentials", CLUSTER_NS), "credentials Secret not created"

        def uninstall() -> None:
            cfg.uninstall(CLUSTER_RELEASE, wait="legacy", timeout=120)
            for o in state.get("objs", []):
                ns = o["metadata"].get("namespace")
                wait_for(f"{o['kind']} {o['metadata']['name']} deleted",
                         lambda o=o, ns=ns: get(kind_ref(o), o["metadata"]["name"], ns) is None)
            for crd in ("dnsendpoints.extdns.io", "dnsproviders.extdns.io", "clusterdnsproviders.extdns.io"):
                assert get("crd", crd, None), f"CRD {crd} removed by uninstall; Helm keeps crds/"

        try:
            checks.run("cluster: install RFC2136 values, objects present", install)
            # The install put the chart's CRDs in place: every values file's provider against them.
            for f in sorted(VALUES_DIR.glob("*.yaml")):
                checks.run(f"cluster: ClusterDNSProvider of {f.name} valid against the CRD (dry run)",
                           lambda f=f: check_provider_valid(chart, f))
            checks.run("cluster: installed objects as rendered (provider spec, ServiceAccount)", server_state)
            checks.run("cluster: upgrade with changed values", upgrade)
            checks.run("cluster: uninstall removes the release, keeps the CRDs", uninstall)
        finally:
            cfg.uninstall(CLUSTER_RELEASE, ignore_not_found=True, timeout=120)
            kubectl("delete", "namespace", CLUSTER_NS, "--ignore-not-found", "--wait=false", check=False)


# --- render mode ----------------------------------------------------------------------------


def merged(base, over):
    """`over` merged into `base` as Helm merges values: maps key by key, anything else replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = merged(base.get(k), v)
        return out
    return over


def render_mode(values_file: str, set_json: list[str], release: str, namespace: str) -> int:
    """Prints the manifests a values file (with --set-json overrides) renders to, as YAML
    documents: what `helm template` would print. The e2e suite (tests/e2e/chart.rs) runs
    the result."""
    values = load_values(Path(values_file))
    for s in set_json:
        values = merged(values, json.loads(s))
    with helm.Chart.load(str(CHART)) as chart:
        print(golden_text(render(chart, values, name=release, namespace=namespace)), end="")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cluster", action="store_true", help="also install, upgrade and uninstall in $KUBECONFIG's cluster")
    parser.add_argument("--extdns-bin", default=os.environ.get("EXTDNS_BIN", str(REPO / "target/debug/extdns")))
    parser.add_argument("--render", metavar="VALUES_FILE", help="only print the manifests VALUES_FILE renders to (no checks)")
    parser.add_argument("--set-json", action="append", default=[], metavar="JSON",
                        help="with --render: values merged over the file's (maps merged, lists replaced); repeatable")
    parser.add_argument("--release", default=RELEASE, help="with --render: the release name")
    parser.add_argument("--namespace", default=NAMESPACE, help="with --render: the release namespace")
    args = parser.parse_args()
    if args.render:
        return render_mode(args.render, args.set_json, args.release, args.namespace)

    checks = Checks()
    values_files = sorted(VALUES_DIR.glob("*.yaml"))
    checks.run("chart crds/ equals crds/extdns.io.yaml", check_crds)
    with helm.Chart.load(str(CHART)) as chart:
        for f in values_files:
            checks.run(f"lint {f.name}", lambda f=f: check_lint(load_values(f)))
            checks.run(f"golden {f.name}", lambda f=f: check_golden(chart, f))
        for values, message in MUST_FAIL:
            checks.run(f"fails {json.dumps(values)}", lambda v=values, m=message: check_fails(chart, v, m))
        help_flags: dict = {}
        checks.run(f"`{args.extdns_bin} run --help` parsed", lambda: help_flags.update(run_help(args.extdns_bin)))
        if help_flags:
            for f in values_files:
                checks.run(f"flags of {f.name} exist in extdns run", lambda f=f: check_flags(chart, f, help_flags))
            checks.run("Deployment runs extdns as config/manager and the e2e harness", lambda: check_runs_as_shipped(chart, help_flags))
        checks.run("PodDisruptionBudget where policy/v1 is served and replicas > 1", lambda: check_pdb(chart))
        checks.run("Google and Azure credentials: Secret volumes, subPath, items, ambient identity", lambda: check_cloud_credentials(chart))
    if args.cluster:
        cluster_checks(checks)
    print(f"{checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
