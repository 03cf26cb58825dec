//! Lower-case hexadecimal, the one way Shoal writes bytes as text: digests (`sha256:…`), the
//! CA fingerprint enrollment tokens pin, hub public keys (`ed25519:…`), the desired-state
//! digest. Also the SHA-256 helpers those are built from, so that hub and agent cannot
//! compute a fingerprint two ways.

use std::fmt;

/// `bytes` as lower-case hex, two digits a byte, no separators.
pub fn encode(bytes: &[u8]) -> String {
    Hex(bytes).to_string()
}

/// The bytes of an even-length string of hex digits (either case); `None` for anything else.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Writes its bytes as lower-case hex when displayed, without building a `String` first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hex<'a>(pub &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// The SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The SHA-256 of `bytes` in lower-case hex (64 digits).
pub fn sha256_hex(bytes: &[u8]) -> String {
    encode(&sha256(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_written_as_two_lower_case_digits_each() {
        let cases: [(&[u8], &str); 4] = [
            (&[], ""),
            (&[0x00, 0x0f, 0xa0, 0xff], "000fa0ff"),
            (&[0x12, 0x34, 0xab, 0xcd], "1234abcd"),
            (b"shoal", "73686f616c"),
        ];
        for (bytes, text) in cases {
            assert_eq!(encode(bytes), text);
            assert_eq!(Hex(bytes).to_string(), text);
            assert_eq!(decode(text).as_deref(), Some(bytes), "{text}");
        }
    }

    #[test]
    fn decoding_takes_either_case_and_refuses_anything_that_is_not_pairs_of_digits() {
        assert_eq!(decode("ABcd"), Some(vec![0xab, 0xcd]));
        for bad in ["a", "abc", "0g", "zz", " 00", "00 ", "+0", "é0", "٣٣"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sha256_is_the_standard_digest() {
        // FIPS 180-2, appendix B.1.
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
