//! The DNS backends of extdns: one module per backend, all behind [`extdns_core::Provider`].
//! Nothing here knows Kubernetes; the operator builds these from a provider spec.

pub mod azure;
pub mod cloudflare;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod embedded;
pub(crate) mod failure;
pub mod google;
pub mod http;
// The reference implementation lives in the core (its own tests use it); it is a backend too.
pub use extdns_core::inmemory;
pub mod powerdns;
pub mod precheck;
pub mod ratelimit;
pub mod rfc2136;
pub mod route53;
pub mod webhook;
pub(crate) mod wire_name;

use extdns_core::RecordType;

/// The wire-format record type of ours, for the providers that speak DNS.
pub(crate) fn wire_type(rt: RecordType) -> hickory_proto::rr::RecordType {
    use hickory_proto::rr::RecordType as W;
    match rt {
        RecordType::A => W::A,
        RecordType::AAAA => W::AAAA,
        RecordType::CNAME => W::CNAME,
        RecordType::TXT => W::TXT,
        RecordType::SRV => W::SRV,
        RecordType::MX => W::MX,
        RecordType::NS => W::NS,
        RecordType::PTR => W::PTR,
        RecordType::CAA => W::CAA,
    }
}
