//! The Shoal hub: CLI today; the daemon (store, scheduler, broker, API) grows here.

pub mod cli;
