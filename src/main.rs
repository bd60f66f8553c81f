fn main() {
    print!("{}", extdns::crd::crds_yaml().expect("crds"));
}
