//! The Shoal edge agent as a library: everything the `shoal-agent` binary runs, behind a public
//! surface kept to two entry points.
//!
//! - [`main`]: the whole command line, which `src/main.rs` calls and nothing else;
//! - [`unpack_layer`] (with its [`ImageError`]): the image layer unpacker on bytes, for the fuzz
//!   targets in `fuzz/`, which feed it hostile tars.
//!
//! Every module stays private: the agent's parts are not an API for other crates.

mod api;
mod cli;
mod config;
mod host;
mod image;
mod launch;
mod mqtt;
mod reconcile;
mod runtime;
mod state;
mod supervisor;
mod telemetry;
#[cfg(test)]
mod testing;
mod update;
mod version;
mod wiring;

pub use cli::main;
pub use image::{unpack_layer, ImageError};
