//! Wire decoding of a presence (node → hub, retained, last will).
//!
//! Never panics; whatever decodes survives the round trip (see `shoal_fuzz::wire`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_model::wire::Presence;

fuzz_target!(|data: &[u8]| shoal_fuzz::wire::<Presence>(data));
