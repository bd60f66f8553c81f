//! The two controllers: thin adapters between Kubernetes objects and the DNS core.

pub mod azure;
pub mod backend;
pub mod leader;
pub mod provider;
pub mod route_index;
pub mod selector;
pub mod source;
pub mod supervise;
pub mod tenancy;

/// Field manager of the provider controller's status writes.
pub const PROVIDER_MANAGER: &str = "extdns-provider";
/// Field manager of the source controller's DNSEndpoint writes.
pub const SOURCE_MANAGER: &str = "extdns-source";
/// Finalizer that keeps a DNSEndpoint until its records are removed.
pub const FINALIZER: &str = "extdns.io/records";

/// Errors of the controllers; each names the operation and the object.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing status of {kind} {name}: {source}")]
    WriteStatus { kind: &'static str, name: String, source: kube::Error },
    #[error("updating finalizers of DNSEndpoint {name}: {source}")]
    Finalizer { name: String, source: kube::Error },
    #[error("applying DNSEndpoint {name}: {source}")]
    ApplyEndpoint { name: String, source: kube::Error },
    #[error("reading DNSEndpoint {name}: {source}")]
    ReadEndpoint { name: String, source: kube::Error },
    #[error("deleting DNSEndpoint {name}: {source}")]
    DeleteEndpoint { name: String, source: kube::Error },
}
