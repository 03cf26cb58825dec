//! The bootstrap file a device reads at first boot (`shoal_model::bootstrap`), from a boot
//! partition anyone holding the card can write.
//!
//! Never panics; what parses renders to text that parses to the same bootstrap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_model::bootstrap::Bootstrap;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Bootstrap::parse(text) {
        Ok(bootstrap) => {
            let again = Bootstrap::parse(&bootstrap.render()).expect("a rendered bootstrap parses");
            assert_eq!(again, bootstrap);
        }
        Err(reason) => assert!(!reason.is_empty()),
    }
});
