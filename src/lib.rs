//! extdns: External-DNS for Kubernetes as a CRD-driven operator.

pub mod dns;
pub mod crd;
pub mod status;
pub mod metrics;
pub mod config;
pub mod controller;
pub mod source;
