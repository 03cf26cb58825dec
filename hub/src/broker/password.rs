//! MQTT client passwords: generation, hashing and verification.
//!
//! Hashes use Mosquitto 2.0's password-file format, `$7$<iterations>$<salt>$<hash>`: PBKDF2 with
//! HMAC-SHA512, a 12-byte salt and a 64-byte derived key, both in standard base64 with padding.
//! The hub stores these strings, the embedded broker checks against them, and the very same
//! strings go into an external Mosquitto's `password_file`, so a node's credentials do not
//! change when a fleet moves to an external broker.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use sha2::Sha512;

/// PBKDF2 iterations for new hashes: Mosquitto 2.0's default.
///
/// Every password Shoal hashes is [`generate`]d: 256 random bits, which no iteration count
/// makes easier or harder to guess, so iterations buy nothing against brute force here. They
/// do cost CPU on every connect, and after a hub restart the whole fleet reconnects at once.
/// Keeping Mosquitto's default costs ~50 µs per check and keeps our files indistinguishable
/// from what `mosquitto_passwd` writes.
pub const ITERATIONS: u32 = 101;

/// Salt length Mosquitto uses (`SALT_LEN` in mosquitto_passwd).
const SALT_BYTES: usize = 12;
/// PBKDF2-HMAC-SHA512 output length Mosquitto writes and expects.
const HASH_BYTES: usize = 64;
/// Bytes of randomness in a generated password.
const PASSWORD_BYTES: usize = 32;
/// The most iterations [`verify`] will run, so a corrupted or hostile stored string cannot pin
/// a CPU for minutes during a connect; mosquitto_passwd's own default is 101.
const MAX_ITERATIONS: u32 = 1_000_000;

/// A new random password: 32 bytes from the OS, URL-safe base64 without padding (43 characters),
/// safe in URLs, YAML, shell arguments and MQTT's UTF-8 password field.
///
/// # Panics
/// When the operating system cannot provide randomness; credentials must never be weak, so
/// there is nothing sensible to fall back to.
pub fn generate() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<PASSWORD_BYTES>())
}

/// The Mosquitto 2.0 hash (`$7$101$<salt>$<hash>`) of `password` with a fresh random salt.
///
/// # Panics
/// When the operating system cannot provide randomness for the salt.
pub fn hash(password: &str) -> String {
    hash_with(password, &random_bytes::<SALT_BYTES>(), ITERATIONS)
}

fn hash_with(password: &str, salt: &[u8], iterations: u32) -> String {
    let derived = derive(password, salt, iterations);
    format!(
        "$7${iterations}${}${}",
        STANDARD.encode(salt),
        STANDARD.encode(derived)
    )
}

/// Whether `password` matches `stored`, a Mosquitto `$7$` hash.
///
/// The comparison of the derived key takes the same time wherever the first difference is.
/// Malformed stored strings, other Mosquitto hash versions (`$6$`), zero or absurd iteration
/// counts are simply `false`.
pub fn verify(password: &str, stored: &str) -> bool {
    let Some((salt, iterations, expected)) = parse(stored) else {
        return false;
    };
    let derived = derive(password, &salt, iterations);
    constant_time_eq(&derived, &expected)
}

/// Salt, iterations and derived key of a `$7$<iterations>$<salt>$<hash>` string.
fn parse(stored: &str) -> Option<(Vec<u8>, u32, Vec<u8>)> {
    let mut fields = stored.strip_prefix("$7$")?.split('$');
    let iterations_text = fields.next()?;
    let salt = fields.next()?;
    let hash = fields.next()?;
    if fields.next().is_some() || !iterations_text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let iterations: u32 = iterations_text.parse().ok()?;
    if !(1..=MAX_ITERATIONS).contains(&iterations) {
        return None;
    }
    let salt = STANDARD.decode(salt).ok()?;
    let hash = STANDARD.decode(hash).ok()?;
    if salt.is_empty() || salt.len() > 64 || hash.len() != HASH_BYTES {
        return None;
    }
    Some((salt, iterations, hash))
}

fn derive(password: &str, salt: &[u8], iterations: u32) -> [u8; HASH_BYTES] {
    let mut derived = [0u8; HASH_BYTES];
    pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), salt, iterations, &mut derived);
    derived
}

/// Equality of two secrets whose running time depends only on their lengths, not on where
/// they first differ; for comparing passwords or derived keys.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| std::hint::black_box(acc | (x ^ y)));
    difference == 0
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system provides random bytes");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `mosquitto_passwd -b -c FILE gw-7 'correct horse battery staple'` (Mosquitto 2.0.11).
    const MOSQUITTO_LINE: &str = "gw-7:$7$101$8TD+rk18xV+axStd$BVFfRNLLHtMMGHWhnFtOrutDuH0d61e5ok4nzV6vCQdJ/COSFfYFgT+kot9S7fho/KSRVBgTQSt6UI5uZtuiPg==";

    fn mosquitto_hash() -> &'static str {
        MOSQUITTO_LINE
            .split_once(':')
            .map(|(_, hash)| hash)
            .expect("user:hash")
    }

    #[test]
    fn a_hash_written_by_mosquitto_passwd_verifies() {
        assert!(verify("correct horse battery staple", mosquitto_hash()));
        assert!(!verify("correct horse battery stapler", mosquitto_hash()));
        assert!(!verify("", mosquitto_hash()));
    }

    #[test]
    fn our_hash_with_mosquittos_salt_is_byte_for_byte_mosquittos() {
        let salt = STANDARD.decode("8TD+rk18xV+axStd").expect("base64 salt");
        assert_eq!(
            hash_with("correct horse battery staple", &salt, 101),
            mosquitto_hash()
        );
    }

    #[test]
    fn hashes_have_mosquittos_shape_and_a_fresh_salt_each_time() {
        let first = hash("secret");
        let second = hash("secret");
        assert_ne!(first, second, "salts repeat");
        for stored in [&first, &second] {
            let fields: Vec<&str> = stored.split('$').collect();
            assert_eq!(fields[..3], ["", "7", "101"], "{stored}");
            assert_eq!(fields[3].len(), 16, "12-byte salt in base64: {stored}");
            assert_eq!(fields[4].len(), 88, "64-byte hash in base64: {stored}");
            assert!(verify("secret", stored));
            assert!(!verify("Secret", stored));
        }
    }

    #[test]
    fn generated_passwords_are_256_random_bits_in_url_safe_base64() {
        let first = generate();
        let second = generate();
        assert_ne!(first, second);
        for password in [&first, &second] {
            assert_eq!(password.len(), 43, "{password}");
            assert!(
                password
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{password}"
            );
            assert_eq!(URL_SAFE_NO_PAD.decode(password).expect("base64").len(), 32);
            assert!(verify(password, &hash(password)));
        }
    }

    #[test]
    fn malformed_stored_strings_never_verify_and_never_panic() {
        let good = mosquitto_hash();
        let (salt, hash) = ("8TD+rk18xV+axStd", good.rsplit('$').next().expect("hash"));
        let cases = [
            String::new(),
            "$".into(),
            "$7$".into(),
            "$7$101".into(),
            format!("$7$101${salt}"),
            format!("$7$101${salt}$"),
            format!("$7$101${salt}${hash}$"),
            format!("$7$101${salt}${hash}$extra"),
            format!("$6${salt}${hash}"),
            format!("$8$101${salt}${hash}"),
            format!("7$101${salt}${hash}"),
            format!("$7$0${salt}${hash}"),
            format!("$7$-1${salt}${hash}"),
            format!("$7$+101${salt}${hash}"),
            format!("$7$ 101${salt}${hash}"),
            format!("$7$99999999999${salt}${hash}"),
            format!("$7$4294967295${salt}${hash}"),
            format!("$7$101$${hash}"),
            format!("$7$101$not base64!${hash}"),
            format!("$7$101${salt}$not base64!"),
            format!("$7$101${salt}${}", &hash[..hash.len() - 4]),
            format!("$7$101${salt}${}", STANDARD.encode([0u8; 32])),
            format!("$7$101${}${hash}", STANDARD.encode([0u8; 65])),
            format!("$7$101${salt}${hash}\n"),
            "$7$101$\u{1F41F}$\u{1F41F}".into(),
        ];
        for stored in &cases {
            assert!(
                !verify("correct horse battery staple", stored),
                "{stored:?}"
            );
        }
    }

    #[test]
    fn equal_length_comparison_checks_every_byte() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"xbc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }
}
