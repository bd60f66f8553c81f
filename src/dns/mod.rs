//! The DNS core: record model, validation, planning, TXT ownership registry and the
//! `Provider` seam. Nothing here knows about Kubernetes, so it is unit-tested in isolation
//! and shared by the controllers, the `render` command and the benchmarks.

pub mod apply;
pub mod endpoint;
pub mod filter;
pub mod labels;
pub mod plan;
pub mod provider;
pub mod providers;
pub mod registry;
pub mod subtree;

pub use endpoint::{Endpoint, RecordKey, RecordType};
pub use provider::{Applied, Change, ChangeResult, Provider, ProviderError, Zone};
