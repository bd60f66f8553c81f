//! One module per DNS backend, all behind [`crate::dns::Provider`].

pub mod conformance;
pub mod embedded;
pub mod inmemory;
pub mod ratelimit;
pub mod rfc2136;
pub mod route53;
