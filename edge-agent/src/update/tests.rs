//! The download against a real HTTP server on loopback that cuts the link, lies about sizes
//! and checks credentials.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::sync::atomic::AtomicBool;

use super::*;

/// How the test server answers one request.
#[derive(Clone, Copy)]
enum Serve {
    /// Sends the asked range, but only `cut` bytes of it, then closes the connection.
    CutAfter(usize),
    /// Sends the asked range whole.
    Whole,
    /// Sends the asked range and `extra` bytes more than the release has.
    TooMuch(usize),
}

/// A server for `body` at any path that answers the requests with `plan`, one each; returns
/// its address and the `Range` headers it saw.
fn server(
    body: Vec<u8>,
    plan: Vec<Serve>,
) -> (String, std::thread::JoinHandle<Vec<Option<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let handle = std::thread::spawn(move || {
        let mut ranges = Vec::new();
        for serve in plan {
            let (mut stream, _) = listener.accept().expect("accept");
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut range = None;
            let mut authorized = false;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).expect("read");
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(r) = lower.strip_prefix("range: bytes=") {
                    range = Some(r.trim_end_matches('-').to_string());
                }
                // "gw-1:secret"
                if lower == "authorization: basic z3ctmtpzzwnyzxq=" {
                    authorized = true;
                }
            }
            ranges.push(range.clone());
            if !authorized {
                let _ = stream.write_all(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n");
                continue;
            }
            let from: usize = range.as_deref().map_or(0, |r| r.parse().expect("from"));
            let (status, mut part) = if from > 0 {
                ("206 Partial Content", body[from..].to_vec())
            } else {
                ("200 OK", body.clone())
            };
            let declared = part.len();
            match serve {
                Serve::CutAfter(cut) => part.truncate(cut),
                Serve::Whole => {}
                Serve::TooMuch(extra) => part.extend(std::iter::repeat_n(0u8, extra)),
            }
            let declared = match serve {
                Serve::TooMuch(extra) => declared + extra,
                _ => declared,
            };
            let head = format!("HTTP/1.1 {status}\r\ncontent-length: {declared}\r\n\r\n");
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&part);
        }
        ranges
    });
    (addr, handle)
}

fn access() -> Access {
    Access {
        node: "gw-1".into(),
        password: "secret".into(),
        ca_file: None,
    }
}

#[test]
fn a_cut_download_resumes_where_it_stopped_and_never_writes_more_than_the_release() {
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let (addr, server) = server(
        body.clone(),
        vec![
            Serve::CutAfter(100_000),
            Serve::CutAfter(50_000),
            Serve::Whole,
        ],
    );
    let dir = tempfile::tempdir().expect("dir");
    let part = dir.path().join("shoal-agent-0.2.0.unverified");
    let client = client(&access()).expect("client");
    let source: ApiUrl = format!("http://{addr}").parse().expect("url");
    let url = (&source, "/v1/agent-binaries/x");
    let stop = AtomicBool::new(false);
    let size = body.len() as u64;
    let seen = std::sync::Mutex::new(Vec::new());
    let progress = |n: u64| seen.lock().expect("lock").push(n);
    for expected in [100_000, 150_000] {
        match download(&client, url, &access(), &part, size, &progress, &stop) {
            Err(Failure::Again(e)) => assert!(format!("{e:#}").contains("bytes"), "{e:#}"),
            other => panic!("a cut link is tried again: {other:?}"),
        }
        assert_eq!(std::fs::metadata(&part).expect("part").len(), expected);
    }
    download(&client, url, &access(), &part, size, &progress, &stop).expect("the rest");
    assert_eq!(std::fs::read(&part).expect("part"), body);
    assert_eq!(
        server.join().expect("server"),
        vec![None, Some("100000".into()), Some("150000".into())],
        "each attempt asks for the rest only"
    );
    assert_eq!(seen.lock().expect("lock").last(), Some(&size));
}

#[test]
fn a_hub_that_sends_more_than_the_release_or_refuses_the_node_fails_for_good() {
    let body = vec![7u8; 10_000];
    let (addr, first) = server(body.clone(), vec![Serve::TooMuch(5_000)]);
    let dir = tempfile::tempdir().expect("dir");
    let part = dir.path().join("a.unverified");
    let client = client(&access()).expect("client");
    let source: ApiUrl = format!("http://{addr}").parse().expect("url");
    let url = (&source, "/v1/agent-binaries/x");
    let stop = AtomicBool::new(false);
    match download(&client, url, &access(), &part, 10_000, &|_| {}, &stop) {
        Err(Failure::ForGood(e)) => assert!(format!("{e:#}").contains("more than"), "{e:#}"),
        other => panic!("{other:?}"),
    }
    assert!(!part.exists(), "what was too much is not kept");
    first.join().expect("server");

    let (addr, second) = server(body, vec![Serve::Whole]);
    let wrong = Access {
        password: "guess".into(),
        ..access()
    };
    let source: ApiUrl = format!("http://{addr}").parse().expect("url");
    let url = (&source, "/v1/agent-binaries/x");
    match download(&client, url, &wrong, &part, 10_000, &|_| {}, &stop) {
        Err(Failure::ForGood(e)) => assert!(format!("{e:#}").contains("401"), "{e:#}"),
        other => panic!("{other:?}"),
    }
    second.join().expect("server");

    // Plain http to another machine would send the password in the clear.
    let elsewhere: ApiUrl = "http://192.0.2.1:7440".parse().expect("url");
    match download(
        &client,
        (&elsewhere, "/v1/agent-binaries/x"),
        &access(),
        &part,
        10_000,
        &|_| {},
        &stop,
    ) {
        Err(Failure::ForGood(e)) => assert!(format!("{e:#}").contains("unencrypted"), "{e:#}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn release_keys_are_kept_and_read_back_and_a_damaged_file_is_an_error() {
    let dir = tempfile::tempdir().expect("dir");
    assert!(trusted_release_keys(dir.path()).expect("none").is_empty());
    let keys = vec![PublicKey([1; 32]), PublicKey([2; 32])];
    keep_release_keys(dir.path(), &keys).expect("keep");
    assert_eq!(trusted_release_keys(dir.path()).expect("read"), keys);
    std::fs::write(dir.path().join(RELEASE_KEYS_FILE), "ed25519:nonsense\n").expect("write");
    let error = trusted_release_keys(dir.path()).expect_err("damaged");
    assert!(error.to_string().contains(RELEASE_KEYS_FILE), "{error}");
}
