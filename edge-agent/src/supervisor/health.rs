//! Health checks: one task per running container with a `health` section. `exec` runs inside
//! the container through the runtime; `tcp` and `http` connect from the agent to the port on
//! loopback — inside the workload's network namespace when it has its own, from a dedicated
//! thread that enters it (namespaces are per thread, so no other work is affected).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_model::manifest::{HealthCheck, Probe};
use shoal_model::quantity::format_duration;
use shoal_model::wire::Health;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Containers, Event, Key};

/// Starts checking; the task sends an [`Event::Health`] whenever the verdict changes and
/// runs until aborted (the container exited or was replaced).
pub fn spawn(
    key: Key,
    check: HealthCheck,
    netns: Option<PathBuf>,
    containers: Arc<dyn Containers>,
    events: mpsc::Sender<Event>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let started = Instant::now();
        let mut failures = 0u32;
        let mut verdict = Health::Starting;
        loop {
            tokio::time::sleep(check.interval).await;
            let result = probe(&key, &check, netns.clone(), Arc::clone(&containers)).await;
            let next = match result {
                Ok(()) => {
                    failures = 0;
                    (Health::Healthy, "health check passed".to_string())
                }
                Err(_) if started.elapsed() < check.start_period => continue,
                Err(reason) => {
                    failures = failures.saturating_add(1);
                    if failures < check.retries {
                        tracing::debug!(
                            workload = key.0,
                            container = key.1,
                            failures,
                            reason,
                            "health check failed"
                        );
                        continue;
                    }
                    (
                        Health::Unhealthy,
                        format!("health check failed {failures} times in a row: {reason}"),
                    )
                }
            };
            if next.0 != verdict {
                verdict = next.0;
                let event = Event::Health {
                    workload: key.0.clone(),
                    container: key.1.clone(),
                    health: next.0,
                    message: next.1,
                };
                if events.send(event).await.is_err() {
                    return;
                }
            }
        }
    })
}

async fn probe(
    key: &Key,
    check: &HealthCheck,
    netns: Option<PathBuf>,
    containers: Arc<dyn Containers>,
) -> Result<(), String> {
    let timeout = check.timeout;
    match check.probe.clone() {
        Probe::Exec(command) => {
            let (workload, container) = key.clone();
            let output = tokio::task::spawn_blocking(move || {
                containers.exec(&workload, &container, &command, timeout)
            })
            .await
            .map_err(|e| format!("the check did not run: {e}"))?
            .map_err(|e| format!("{e:#}"))?;
            if output.exit_code == 0 {
                Ok(())
            } else {
                let stderr = String::from_utf8_lossy(&output.stderr);
                Err(format!(
                    "exit status {}{}",
                    output.exit_code,
                    first_line(&stderr)
                ))
            }
        }
        Probe::Tcp { port } => network(netns, move || connect(port, timeout).map(drop)).await,
        Probe::Http { port, path } => network(netns, move || http_get(port, &path, timeout)).await,
    }
}

fn first_line(text: &str) -> String {
    match text.lines().next() {
        Some(line) if !line.trim().is_empty() => format!(": {}", line.trim()),
        _ => String::new(),
    }
}

/// Runs a blocking network probe, in the workload's network namespace when it has one.
async fn network(
    netns: Option<PathBuf>,
    probe: impl FnOnce() -> Result<(), String> + Send + 'static,
) -> Result<(), String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let work = move || {
        let result = match &netns {
            Some(path) => enter(path).and_then(|()| probe()),
            None => probe(),
        };
        let _ = tx.send(result);
    };
    if std::thread::Builder::new()
        .name("shoal-probe".into())
        .spawn(work)
        .is_err()
    {
        return Err("cannot start a probe thread".into());
    }
    rx.await
        .map_err(|_| "the probe thread ended without an answer".to_string())?
}

/// Moves the calling thread (only) into the network namespace bound at `path`.
fn enter(path: &std::path::Path) -> Result<(), String> {
    let file = std::fs::File::open(path)
        .map_err(|e| format!("cannot open the network namespace {}: {e}", path.display()))?;
    rustix::thread::move_into_link_name_space(
        file.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .map_err(|e| format!("cannot enter the network namespace {}: {e}", path.display()))
}

fn connect(port: u16, timeout: Duration) -> Result<TcpStream, String> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&address, timeout)
        .map_err(|e| format!("cannot connect to port {port}: {e}"))
}

/// Healthy on a 2xx or 3xx status line within the timeout.
fn http_get(port: u16, path: &str, timeout: Duration) -> Result<(), String> {
    let mut stream = connect(port, timeout)?;
    let io = |e: std::io::Error| format!("http://127.0.0.1:{port}{path}: {e}");
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: shoal-agent\r\n\r\n"
    )
    .map_err(io)?;
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < 12 {
        match stream.read(&mut head[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            // A server may answer and reset the connection at once: judge what arrived.
            Err(_) if read > 0 => break,
            Err(e) => return Err(io(e)),
        }
    }
    let line = String::from_utf8_lossy(&head[..read]);
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok());
    match status {
        Some(code) if (200..400).contains(&code) => Ok(()),
        Some(code) => Err(format!("http://127.0.0.1:{port}{path} answered {code}")),
        None => Err(format!(
            "http://127.0.0.1:{port}{path} did not answer HTTP within {}",
            format_duration(timeout)
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    fn serve_once(answer: &'static str) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            if let Ok((mut stream, _)) = listener.accept() {
                // Read the whole request first, so closing does not reset the connection.
                let mut request = Vec::new();
                let mut buf = [0u8; 256];
                while !request.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        port
    }

    #[test]
    fn http_checks_pass_on_2xx_and_3xx_and_fail_otherwise() {
        let second = Duration::from_secs(1);
        assert_eq!(
            http_get(serve_once("HTTP/1.0 200 OK\r\n\r\n"), "/healthz", second),
            Ok(())
        );
        assert_eq!(
            http_get(serve_once("HTTP/1.1 302 Found\r\n\r\n"), "/", second),
            Ok(())
        );
        let err = http_get(
            serve_once("HTTP/1.1 503 Unavailable\r\n\r\n"),
            "/healthz",
            second,
        )
        .expect_err("503");
        assert!(err.ends_with("/healthz answered 503"), "{err}");
        let err = http_get(serve_once("garbage"), "/", second).expect_err("not http");
        assert!(err.contains("did not answer HTTP"), "{err}");
    }

    #[test]
    fn tcp_checks_fail_on_a_closed_port() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert!(connect(port, Duration::from_secs(1)).is_ok());
        drop(listener);
        let err = connect(port, Duration::from_secs(1)).expect_err("closed");
        assert!(err.contains(&format!("port {port}")), "{err}");
    }
}
