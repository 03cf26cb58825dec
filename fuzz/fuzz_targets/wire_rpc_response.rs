//! Wire decoding of a rpc response (node → hub).
//!
//! Never panics; whatever decodes survives the round trip (see `shoal_fuzz::wire`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_model::wire::RpcResponse;

fuzz_target!(|data: &[u8]| shoal_fuzz::wire::<RpcResponse>(data));
