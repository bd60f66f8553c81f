//! The global allocator: jemalloc, configured to give freed memory back to the system.
//!
//! Measured with `e2e/bench/heap.sh HEAP_PROFILER=none` (10,000 one-record DNSEndpoints on the
//! embedded provider, release build, issue 24): glibc's malloc held 68 MiB of anonymous memory
//! for about 44 MiB of live heap, because each burst of objects left freed chunks in its
//! per-thread arenas, and `malloc_trim` only brought that to 59 MiB. jemalloc with the settings
//! below held 50 MiB, and its peak was lower too. mimalloc measured worse than glibc.
//!
//! `make bench-heap` builds without the `jemalloc` feature: heaptrack counts the system
//! allocator's calls, which jemalloc's own symbols bypass.

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc reads this at its first allocation (`_RJEM_MALLOC_CONF` in the environment
/// overrides it). One arena: the operator has two runtime threads and a few blocking ones, and
/// an arena per thread keeps each one's freed pages apart. A background thread returns freed
/// pages a second after a burst, even when nothing allocates afterwards; `muzzy_decay_ms:0`
/// makes that an immediate `MADV_DONTNEED`, so the resident set falls rather than waiting for
/// the kernel to need the pages.
#[cfg(feature = "jemalloc")]
#[export_name = "_rjem_malloc_conf"]
pub static MALLOC_CONF: &[u8; 70] = b"narenas:1,background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";
