//! Urls that say where the hub is: `BrokerUrl` and `ApiUrl` (`shoal_model::endpoint`) on
//! arbitrary text, as agent.toml, `--hub`, `--advertise` and the enrollment answer give them.
//!
//! Never panics; a refusal quotes at most 100 characters of the text and says something;
//! what parses is written back as a url that parses to the same thing, whose host parses
//! back to the same host, and whose port is never 0.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_model::endpoint::{ApiUrl, BrokerUrl, Host, UrlError};

fn refusal(error: &UrlError) {
    assert!(error.text.chars().count() <= 100, "{error}");
    assert!(!error.reason.to_string().is_empty(), "{error:?}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match text.parse::<BrokerUrl>() {
        Ok(url) => {
            assert_ne!(url.port(), 0, "{text:?}");
            let written = url.to_string();
            assert_eq!(written.parse::<BrokerUrl>().as_ref(), Ok(&url), "{text:?}");
            assert_eq!(Host::parse(&url.host().to_string()).as_ref(), Ok(url.host()));
        }
        Err(error) => refusal(&error),
    }
    match text.parse::<ApiUrl>() {
        Ok(url) => {
            assert_ne!(url.port(), 0, "{text:?}");
            let written = url.to_string();
            assert_eq!(written.parse::<ApiUrl>().as_ref(), Ok(&url), "{text:?}");
            assert!(!written.ends_with('/'), "{written}");
            assert_eq!(Host::parse(&url.host().to_string()).as_ref(), Ok(url.host()));
        }
        Err(error) => refusal(&error),
    }
});
