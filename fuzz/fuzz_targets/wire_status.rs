//! Wire decoding of a node status (node → hub).
//!
//! Never panics; whatever decodes survives the round trip (see `shoal_fuzz::wire`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_model::wire::NodeStatus;

fuzz_target!(|data: &[u8]| shoal_fuzz::wire::<NodeStatus>(data));
