//! Wire version 2, frozen: the shapes release 0.1.0 sends, receives and stores.
//!
//! These are copies of the domain types (`crate::manifest`, `crate::node`, `crate::wire`) as
//! they were when 0.1.0 shipped, with explicit conversions each way. postcard encodes them
//! positionally, so **nothing in this module may ever change**: not a field, not its type, not
//! the order of fields or variants, not a serde attribute. Every deployed node and every
//! database holds these bytes, and `model/tests/golden.rs` fails when they move. A new shape
//! goes in a new `vN` module beside this one (see the rule in `wire/mod.rs`).
//!
//! One exception is on record, and must stay the only one: `EventReason::StatusRefused` was
//! appended after 0.1.0 for the hub's own `status-refused` events. An appended variant keeps
//! every old byte readable, but an old reader cannot read it, so it is harmless only where no
//! old reader ever meets it: it lives in the hub's database alone (which an older hub refuses
//! to open, its schema being newer), and the status and rpc checks refuse it on the wire. The
//! next new variant or field is a new version.
//!
//! The domain types may change freely as long as the conversions here still produce the same
//! version-2 bytes from them, and still read every version-2 value into them.
//!
//! Conversions from the domain are infallible (`From`); conversions back (`TryFrom`, or
//! `From` where nothing can be wrong) re-check what the domain promises and serde no longer
//! checks for it (a duration that overflows, a percentage over 100), and never panic.

mod manifest;
mod messages;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use manifest::*;
pub use messages::*;

/// The first byte of every version-2 message; also the format number of version-2 rows.
pub const VERSION: u8 = 2;

/// A version-2 value that decoded but cannot be a domain value; says why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid(pub String);

/// Why version-2 bytes did not decode.
#[derive(Debug)]
pub enum DecodeError {
    Malformed(postcard::Error),
    /// The value ended this many bytes before the input did.
    Trailing(usize),
}

/// The version-2 bytes of a frozen value.
pub fn to_bytes<T: Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_allocvec(value)
}

/// `prefix` followed by the version-2 bytes of a frozen value.
pub fn to_bytes_after<T: Serialize>(
    prefix: Vec<u8>,
    value: &T,
) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_extend(value, prefix)
}

/// A frozen value from exactly `bytes`: nothing may follow it.
pub fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (value, rest) = postcard::take_from_bytes::<T>(bytes).map_err(DecodeError::Malformed)?;
    if !rest.is_empty() {
        return Err(DecodeError::Trailing(rest.len()));
    }
    Ok(value)
}

/// How many bytes a frozen value takes, without keeping them.
pub fn encoded_len<T: Serialize>(value: &T) -> usize {
    postcard::experimental::serialized_size(value).unwrap_or(usize::MAX / 4)
}
