//! The DNS layer as the operator sees it: the core (`extdns-core`: record model, planner,
//! registry, the `Provider` seam) and the backends behind it, under the paths the operator,
//! the tests and the benchmark have always used.

pub use extdns_core::{apply, backoff, endpoint, filter, labels, plan, provider, registry, subtree, vec_map, zone};
pub use extdns_providers as providers;

pub use extdns_core::{Applied, Change, ChangeResult, Endpoint, Provider, ProviderError, RecordKey, RecordType, Zone};
