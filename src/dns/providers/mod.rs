//! One module per DNS backend, all behind [`crate::dns::Provider`].

pub mod inmemory;
