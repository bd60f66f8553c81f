//! One module per DNS backend, all behind [`crate::dns::Provider`].

pub mod inmemory;
pub mod embedded;
pub mod conformance;
pub mod rfc2136;
