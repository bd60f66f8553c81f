//! extdns: External-DNS for Kubernetes as a CRD-driven operator.

pub mod config;
pub mod controller;
pub mod crd;
pub mod dns;
pub mod metrics;
pub mod render_plan;
pub mod source;
pub mod status;
