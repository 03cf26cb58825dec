//! The Shoal hub: `shoal serve` (store, scheduler, broker, MQTT client, HTTP API) and the CLI
//! that talks to it.

pub mod admission;
pub mod api;
pub mod backup;
pub mod broker;
pub mod claim;
pub mod cli;
pub mod context;
pub mod control;
pub mod counters;
pub mod demo;
pub mod desired;
pub mod flash;
pub mod pki;
pub mod rpc;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod telemetry;
