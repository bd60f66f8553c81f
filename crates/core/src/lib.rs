//! The DNS core of extdns: record model, validation, planning, TXT ownership registry and
//! the `Provider` seam. This crate knows neither Kubernetes nor the network (the crate graph
//! enforces it: no kube, no HTTP client, no DNS wire library), so it is unit-tested in
//! isolation and shared by the providers, the controllers, the `render` command and the
//! benchmarks.

pub mod apply;
pub mod backoff;
pub mod endpoint;
pub mod filter;
pub mod inmemory;
pub mod labels;
pub mod plan;
pub mod provider;
pub mod registry;
pub mod subtree;
pub mod vec_map;
pub mod zone;

pub use endpoint::{Endpoint, RecordKey, RecordType};
pub use provider::{Applied, Change, ChangeResult, Provider, ProviderError, Zone};
