use std::fmt;
use std::net::IpAddr;

use proptest::prelude::*;

use super::*;

fn name(host: &str) -> Host {
    Host::Name(host.to_string())
}

fn ip(text: &str) -> Host {
    Host::Ip(text.parse::<IpAddr>().expect("an IP address"))
}

/// Either kind of url, for the rows both kinds of test share.
trait Url: FromStr<Err = UrlError> + fmt::Display + fmt::Debug + PartialEq {
    fn parts(&self) -> (bool, &Host, u16);
}

impl Url for BrokerUrl {
    fn parts(&self) -> (bool, &Host, u16) {
        (self.is_tls(), self.host(), self.port())
    }
}

impl Url for ApiUrl {
    fn parts(&self) -> (bool, &Host, u16) {
        (self.is_tls(), self.host(), self.port())
    }
}

/// Each row (given, tls, host, port, written back) parses to its parts and is written back
/// as a url that parses to the same thing.
fn check_accepted<U: Url>(cases: &[(&str, bool, Host, u16, &str)]) {
    for (given, tls, host, port, written) in cases {
        let url: U = given.parse().unwrap_or_else(|e| panic!("{given:?}: {e}"));
        assert_eq!(url.parts(), (*tls, host, *port), "{given:?}");
        assert_eq!(url.to_string(), *written, "{given:?}");
        assert_eq!(
            written.parse::<U>().as_ref(),
            Ok(&url),
            "{written} round-trips"
        );
    }
}

#[test]
fn broker_urls_take_the_default_port_of_their_scheme_and_write_it_back() {
    // (given, tls, host, port, written back)
    let cases = [
        (
            "mqtt://hub.example",
            false,
            name("hub.example"),
            1883,
            "mqtt://hub.example:1883",
        ),
        (
            "mqtts://hub.example",
            true,
            name("hub.example"),
            8883,
            "mqtts://hub.example:8883",
        ),
        (
            "mqtt://10.0.0.5:11883",
            false,
            ip("10.0.0.5"),
            11883,
            "mqtt://10.0.0.5:11883",
        ),
        (
            "mqtts://broker:443/",
            true,
            name("broker"),
            443,
            "mqtts://broker:443",
        ),
        (
            "MQTTS://Hub.Example:8884",
            true,
            name("Hub.Example"),
            8884,
            "mqtts://Hub.Example:8884",
        ),
        (
            "Mqtt://hub_1",
            false,
            name("hub_1"),
            1883,
            "mqtt://hub_1:1883",
        ),
        (
            "mqtt://[::1]:1884",
            false,
            ip("::1"),
            1884,
            "mqtt://[::1]:1884",
        ),
        (
            "mqtts://[fd00::7]",
            true,
            ip("fd00::7"),
            8883,
            "mqtts://[fd00::7]:8883",
        ),
        (
            "mqtts://[FD00:0::7]:9",
            true,
            ip("fd00::7"),
            9,
            "mqtts://[fd00::7]:9",
        ),
        ("  mqtt://h:1 \n", false, name("h"), 1, "mqtt://h:1"),
        ("mqtt://h:080", false, name("h"), 80, "mqtt://h:80"),
        ("mqtt://h:65535", false, name("h"), 65535, "mqtt://h:65535"),
        (
            "mqtt://hub.example.:1",
            false,
            name("hub.example."),
            1,
            "mqtt://hub.example.:1",
        ),
    ];
    check_accepted::<BrokerUrl>(&cases);
}

#[test]
fn hub_api_urls_are_written_back_as_given_without_a_trailing_slash() {
    // (given, tls, host, port, written back)
    let cases = [
        (
            "http://127.0.0.1:7440",
            false,
            ip("127.0.0.1"),
            7440,
            "http://127.0.0.1:7440",
        ),
        (
            "https://hub.example",
            true,
            name("hub.example"),
            443,
            "https://hub.example",
        ),
        (
            "http://hub.example",
            false,
            name("hub.example"),
            80,
            "http://hub.example",
        ),
        (
            "http://hub:7440/",
            false,
            name("hub"),
            7440,
            "http://hub:7440",
        ),
        (
            "HTTPS://hub:7440",
            true,
            name("hub"),
            7440,
            "https://hub:7440",
        ),
        (
            "http://[::1]:7440",
            false,
            ip("::1"),
            7440,
            "http://[::1]:7440",
        ),
        (
            "http://[fe80::1]",
            false,
            ip("fe80::1"),
            80,
            "http://[fe80::1]",
        ),
        (" http://hub:1 ", false, name("hub"), 1, "http://hub:1"),
    ];
    check_accepted::<ApiUrl>(&cases);
}

/// Every refusal, for both kinds of url where the rule is shared.
#[test]
fn urls_that_cannot_be_honoured_are_refused_with_the_reason() {
    let long = format!("mqtt://{}", "a".repeat(MAX_URL_LEN));
    let cases: Vec<(&str, Reason)> = vec![
        ("", Reason::NoScheme),
        ("hub.example:1883", Reason::NoScheme),
        ("//hub", Reason::NoScheme),
        ("http://hub.example", Reason::Scheme("http".into())),
        ("mqtt+ws://hub", Reason::Scheme("mqtt+ws".into())),
        (
            "tcp://hub",
            Reason::SchemeAlias {
                given: "tcp".into(),
                instead: "mqtt",
            },
        ),
        (
            "ssl://hub",
            Reason::SchemeAlias {
                given: "ssl".into(),
                instead: "mqtts",
            },
        ),
        (
            "TLS://hub",
            Reason::SchemeAlias {
                given: "tls".into(),
                instead: "mqtts",
            },
        ),
        ("mqtt://", Reason::NoHost),
        ("mqtt:///", Reason::NoHost),
        ("mqtt://:1883", Reason::NoHost),
        ("mqtt://hub:0", Reason::Port("0".into())),
        ("mqtt://hub:70000", Reason::Port("70000".into())),
        ("mqtt://hub:x", Reason::Port("x".into())),
        ("mqtt://hub:", Reason::Port("".into())),
        ("mqtt://hub:+80", Reason::Port("+80".into())),
        ("mqtt://hub:-1", Reason::Port("-1".into())),
        ("mqtt://hub: 80", Reason::Port(" 80".into())),
        ("mqtt://hub:000080", Reason::Port("000080".into())),
        ("mqtt://hub:٨٠", Reason::Port("٨٠".into())),
        ("mqtt://[::1]:+1", Reason::Port("+1".into())),
        ("mqtt://user:pw@hub", Reason::Credentials),
        ("mqtt://@hub", Reason::Credentials),
        ("mqtt://hub/shoal", Reason::Path),
        ("mqtt://hub//", Reason::Path),
        ("mqtt://hub?x=1", Reason::Path),
        ("mqtt://hub#top", Reason::Path),
        ("mqtt://[::1", Reason::UnclosedBracket),
        ("mqtt://[nope]:1883", Reason::NotIpv6("nope".into())),
        ("mqtt://[10.0.0.1]", Reason::NotIpv6("10.0.0.1".into())),
        ("mqtt://[]", Reason::NotIpv6("".into())),
        ("mqtt://[::1]x", Reason::AfterIpv6("x".into())),
        ("mqtt://[::1]]:1", Reason::AfterIpv6("]:1".into())),
        ("mqtt://::1", Reason::Ipv6Brackets),
        ("mqtt://fd00::1:1883", Reason::Ipv6Brackets),
        ("mqtt://hub:1:2", Reason::Ipv6Brackets),
        (
            "mqtt://hub..example",
            Reason::HostName("hub..example".into()),
        ),
        ("mqtt://.", Reason::HostName(".".into())),
        (
            "mqtt://hub.example..",
            Reason::HostName("hub.example..".into()),
        ),
        ("mqtt://-hub", Reason::HostName("-hub".into())),
        ("mqtt://hub-", Reason::HostName("hub-".into())),
        ("mqtt://hub name", Reason::HostName("hub name".into())),
        ("mqtt://hüb", Reason::HostName("hüb".into())),
        ("mqtt://hub%2e", Reason::HostName("hub%2e".into())),
        (&long, Reason::TooLong),
    ];
    for (given, reason) in cases {
        let error = given.parse::<BrokerUrl>().expect_err(given);
        assert_eq!(error.reason, reason, "{given:?}");
        assert_eq!(error.kind, Kind::Broker);
        assert!(
            error.text.chars().count() <= 100,
            "{given:?}: quotes at most 100 characters"
        );
        let api = given.replacen("mqtt://", "http://", 1);
        if api != given {
            let error = api.parse::<ApiUrl>().expect_err(&api);
            assert_eq!(error.reason, reason, "{api:?}");
        }
    }
}

#[test]
fn hub_api_urls_take_only_http_and_https() {
    let cases = [
        ("mqtt://hub:1883", Reason::Scheme("mqtt".into())),
        ("tcp://hub", Reason::Scheme("tcp".into())),
        ("ftp://hub", Reason::Scheme("ftp".into())),
        ("127.0.0.1:7440", Reason::NoScheme),
    ];
    for (given, reason) in cases {
        let error = given.parse::<ApiUrl>().expect_err(given);
        assert_eq!((error.kind, error.reason), (Kind::Api, reason), "{given:?}");
    }
}

#[test]
fn an_error_quotes_the_url_and_says_what_to_write() {
    let cases = [
        (
            "http://h".parse::<BrokerUrl>().map(drop),
            "`http://h` is not a broker url: unsupported scheme `http` (write it as mqtt://HOST[:PORT] or mqtts://HOST[:PORT])",
        ),
        (
            "https://hub:+1".parse::<ApiUrl>().map(drop),
            "`https://hub:+1` is not a hub API url: `+1` is not a port number (1-65535) (write it as https://HOST[:PORT] or http://HOST[:PORT])",
        ),
        (
            "mqtt://[::1".parse::<BrokerUrl>().map(drop),
            "`mqtt://[::1` is not a broker url: an IPv6 address needs a closing `]` (write it as mqtt://HOST[:PORT] or mqtts://HOST[:PORT])",
        ),
    ];
    for (result, expected) in cases {
        assert_eq!(result.map_err(|e| e.to_string()), Err(expected.to_string()));
    }
}

#[test]
fn hosts_know_whether_only_this_machine_reaches_them() {
    // (host, loopback, unspecified, in a url)
    let cases = [
        (name("localhost"), true, false, "localhost"),
        (name("LocalHost"), true, false, "LocalHost"),
        (ip("127.0.0.1"), true, false, "127.0.0.1"),
        (ip("127.3.2.1"), true, false, "127.3.2.1"),
        (ip("::1"), true, false, "[::1]"),
        (ip("0.0.0.0"), false, true, "0.0.0.0"),
        (ip("::"), false, true, "[::]"),
        (ip("192.168.1.10"), false, false, "192.168.1.10"),
        (ip("fd00::1"), false, false, "[fd00::1]"),
        (name("hub.example"), false, false, "hub.example"),
        (name("localhost.example"), false, false, "localhost.example"),
    ];
    for (host, loopback, unspecified, in_url) in cases {
        assert_eq!(host.is_loopback(), loopback, "{host}");
        assert_eq!(host.is_unspecified(), unspecified, "{host}");
        assert_eq!(host.in_url().to_string(), in_url);
        assert_eq!(
            Host::parse(&host.to_string()).as_ref(),
            Ok(&host),
            "{host} parses back"
        );
    }
    assert_eq!(Host::parse(""), Err(Reason::NoHost));
    assert_eq!(Host::parse("[::1]"), Err(Reason::HostName("[::1]".into())));
}

#[test]
fn urls_cross_serde_as_their_text_and_bad_text_is_a_clear_error() {
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Answer {
        broker: BrokerUrl,
        hub: ApiUrl,
    }
    let answer = Answer {
        broker: "mqtts://hub.example:8883".parse().expect("valid"),
        hub: "https://[fd00::1]:7440".parse().expect("valid"),
    };
    let json = serde_json::to_string(&answer).expect("serialize");
    assert_eq!(
        json,
        r#"{"broker":"mqtts://hub.example:8883","hub":"https://[fd00::1]:7440"}"#
    );
    assert_eq!(
        serde_json::from_str::<Answer>(&json).expect("deserialize"),
        answer
    );
    let bad = r#"{"broker":"mqtts://hub.example:+1","hub":"https://hub"}"#;
    let error = serde_json::from_str::<Answer>(bad).expect_err("a bad port");
    assert!(
        error.to_string().contains("`+1` is not a port number"),
        "{error}"
    );
    let error = serde_json::from_str::<Answer>(r#"{"broker":7,"hub":"https://hub"}"#)
        .expect_err("not a string");
    assert!(error.to_string().contains("expected a string"), "{error}");
}

proptest! {
    /// Whatever the text, parsing answers (never panics), and what it accepts it writes back
    /// as a url that parses to the same thing.
    #[test]
    fn any_text_parses_or_is_refused_and_what_parses_round_trips(
        text in "(?i:(mqtts?|https?|tcp)://)?(\\[[0-9a-f:.]{0,12}\\]?|[a-z0-9._-]{0,12})(:[0-9+-]{0,6})?/?[?#@/a-z]{0,2}",
        any in "\\PC{0,40}",
    ) {
        for text in [text.as_str(), any.as_str()] {
            if let Ok(url) = text.parse::<BrokerUrl>() {
                prop_assert_eq!(url.to_string().parse::<BrokerUrl>(), Ok(url));
            }
            if let Ok(url) = text.parse::<ApiUrl>() {
                prop_assert_eq!(url.to_string().parse::<ApiUrl>(), Ok(url));
            }
        }
    }
}
