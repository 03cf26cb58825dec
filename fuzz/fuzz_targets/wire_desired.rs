//! Wire decoding of a desired state (hub → node, retained).
//!
//! Never panics; whatever decodes survives the round trip (see `shoal_fuzz::wire`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_model::wire::DesiredState;

fuzz_target!(|data: &[u8]| shoal_fuzz::wire::<DesiredState>(data));
