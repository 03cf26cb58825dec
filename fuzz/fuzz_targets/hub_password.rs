//! MQTT password checks, `shoal_hub::broker::password::verify(password, stored)`.
//!
//! Input: the password, a newline, then the stored hash (arbitrary, so malformed, truncated and
//! hostile `$7$` strings). Never panics. Bounded time rests on the hash's own iteration cap
//! (at most 1,000,000 PBKDF2 rounds); libFuzzer's `-timeout` catches anything slower.
//! A fresh hash of the password verifies, and does not verify a different password.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_hub::broker::password::{hash, verify};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (password, stored) = text.split_once('\n').unwrap_or((text, ""));
    let _ = verify(password, stored);
    let _ = verify(stored, password);

    let fresh = hash(password);
    assert!(verify(password, &fresh), "a fresh hash does not verify");
    // HMAC pads short keys with zeros, so PBKDF2 (here and in Mosquitto) cannot tell
    // `pw` from `pw\0`: only passwords that differ beyond trailing NULs must not verify.
    if stored.trim_end_matches('\0') != password.trim_end_matches('\0') {
        assert!(
            !verify(stored, &fresh),
            "a fresh hash verifies another password"
        );
    }
});
