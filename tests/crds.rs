//! Fails when crds/ no longer matches the Rust types: run `make crds`.

#[test]
fn crds_directory_is_fresh() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/extdns.io.yaml");
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    let generated = extdns::crd::crds_yaml().expect("CRDs serialise");
    assert!(on_disk == generated, "crds/extdns.io.yaml is stale or missing: run `make crds` and commit the result");
}
