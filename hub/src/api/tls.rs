//! HTTPS for the API: [`TlsListener`] is an [`axum::serve::Listener`] that hands axum
//! connections whose TLS handshake is already done, so `axum::serve(tls_listener, router)`
//! serves HTTPS exactly as `axum::serve(tcp_listener, router)` serves HTTP.
//!
//! Invariant: no client can hold up another. One background task accepts TCP connections,
//! each handshake runs in its own task under [`HANDSHAKE_TIMEOUT`], and finished streams
//! queue for [`TlsListener::accept`] in a bounded channel. At most [`MAX_HANDSHAKES`]
//! handshakes are in progress (a finished one waiting in the full queue still counts); beyond
//! that, new connections wait in the kernel's backlog. Dropping the listener stops the accept
//! task and every handshake in progress.
//!
//! The crypto provider is aws-lc-rs, the one the embedded broker's TLS uses, named
//! explicitly so this works whether or not a process default is installed.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client has, from its TCP connection, to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How many TLS handshakes run at once.
pub const MAX_HANDSHAKES: usize = 256;
/// How many finished connections wait for axum to take them.
const READY_QUEUE: usize = 64;
/// How long to pause accepting after an error such as "too many open files".
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot use the server certificate and key for TLS: {source}")]
    Config { source: rustls::Error },
    #[error("cannot read the API listener's address: {source}")]
    LocalAddr { source: io::Error },
}

/// A TLS server socket for `axum::serve`.
#[derive(Debug)]
pub struct TlsListener {
    local_addr: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    accept_task: JoinHandle<()>,
}

/// The bounds on handshakes; tests shorten them.
#[derive(Clone, Copy, Debug)]
struct Limits {
    handshake_timeout: Duration,
    max_handshakes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            handshake_timeout: HANDSHAKE_TIMEOUT,
            max_handshakes: MAX_HANDSHAKES,
        }
    }
}

impl TlsListener {
    /// Serves TLS on `tcp` with the certificate `chain` (server certificate first) and its
    /// `key`; HTTP/1.1 only, no client certificates. Spawns the accept task, so call it
    /// within a Tokio runtime.
    pub fn new(
        tcp: TcpListener,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<TlsListener, TlsError> {
        TlsListener::with_config(tcp, Arc::new(server_config(chain, key)?))
    }

    /// Serves TLS on `tcp` with a rustls configuration of the caller's (for example one that
    /// asks for client certificates). Spawns the accept task, so call it within a Tokio runtime.
    pub fn with_config(
        tcp: TcpListener,
        config: Arc<ServerConfig>,
    ) -> Result<TlsListener, TlsError> {
        TlsListener::start(tcp, config, Limits::default())
    }

    fn start(
        tcp: TcpListener,
        config: Arc<ServerConfig>,
        limits: Limits,
    ) -> Result<TlsListener, TlsError> {
        let local_addr = tcp
            .local_addr()
            .map_err(|source| TlsError::LocalAddr { source })?;
        let (sender, ready) = mpsc::channel(READY_QUEUE);
        let accept_task = tokio::spawn(accept_loop(tcp, TlsAcceptor::from(config), sender, limits));
        Ok(TlsListener {
            local_addr,
            ready,
            accept_task,
        })
    }

    /// Where the listener listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        // Dropping the accept loop drops its JoinSet, which aborts the handshakes in progress.
        self.accept_task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            None => {
                // Only a panic in the accept loop gets here; it was logged where it happened.
                tracing::error!(
                    addr = %self.local_addr,
                    "the API's TLS listener stopped accepting connections: restart the hub"
                );
                std::future::pending().await
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

/// rustls' server configuration for the API with the aws-lc-rs provider.
fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|source| TlsError::Config { source })?;
    // Naming the one protocol served makes a client that wants another one fail the
    // handshake instead of talking HTTP/1.1 to something else.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts TCP connections and starts a handshake task for each, at most
/// `limits.max_handshakes` at a time, until the listener is dropped.
async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    limits: Limits,
) {
    let mut handshakes = JoinSet::new();
    loop {
        while handshakes.len() >= limits.max_handshakes {
            if let Some(done) = handshakes.join_next().await {
                reap(done);
            }
        }
        tokio::select! {
            biased;
            () = ready.closed() => return,
            Some(done) = handshakes.join_next() => reap(done),
            accepted = tcp.accept() => match accepted {
                Ok((stream, peer)) => {
                    handshakes.spawn(handshake(
                        acceptor.clone(),
                        stream,
                        peer,
                        ready.clone(),
                        limits.handshake_timeout,
                    ));
                }
                Err(error) => pause_after(error).await,
            },
        }
    }
}

/// Runs one handshake and queues the stream for `accept`; a failure drops the connection.
async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    timeout: Duration,
) {
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            // An error means the listener is gone, and the connection with it.
            let _ = ready.send((tls, peer)).await;
        }
        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, ?timeout, "TLS handshake timed out"),
    }
}

fn reap(done: Result<(), JoinError>) {
    if let Err(error) = done {
        if error.is_panic() {
            tracing::error!(%error, "a TLS handshake task panicked");
        }
    }
}

/// What axum does for its own TCP listener: a client that gave up is nobody's problem; any
/// other error (such as running out of file descriptors) pauses accepting for a moment.
async fn pause_after(error: io::Error) {
    if matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        tracing::debug!(%error, "a client left before its connection was accepted");
        return;
    }
    tracing::warn!(%error, pause = ?ACCEPT_ERROR_PAUSE, "cannot accept API connections, retrying");
    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use axum::routing::get;
    use axum::Router;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use ureq::tls::{Certificate, RootCerts, TlsConfig};

    use super::*;
    use crate::pki::Ca;

    /// Far longer than any request here takes, far shorter than a test runner's patience.
    const PATIENCE: Duration = Duration::from_secs(5);

    /// A `GET /ping` → `pong` server on loopback, over TLS with a certificate from `ca`.
    async fn serve_ping(ca: &Ca, limits: Limits) -> (SocketAddr, JoinHandle<()>) {
        let cert = ca.issue_server(&["127.0.0.1"]).expect("server certificate");
        let config = server_config(cert.cert_chain_der(), cert.key_der()).expect("config");
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let listener = TlsListener::start(tcp, Arc::new(config), limits).expect("listener");
        let addr = listener.local_addr();
        let router = Router::new().route("/ping", get(|| async { "pong" }));
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("serve");
        });
        (addr, server)
    }

    /// `GET https://addr/ping` with ureq (rustls, ring), trusting only `root`.
    async fn get_ping(addr: SocketAddr, root: &Ca) -> Result<String, ureq::Error> {
        let root = Certificate::from_der(root.cert_der()).to_owned();
        tokio::task::spawn_blocking(move || {
            let tls = TlsConfig::builder()
                .root_certs(RootCerts::Specific(Arc::new(vec![root])))
                .build();
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .tls_config(tls)
                .timeout_global(Some(PATIENCE))
                .build()
                .into();
            agent
                .get(format!("https://{addr}/ping"))
                .call()?
                .body_mut()
                .read_to_string()
        })
        .await
        .expect("the client thread")
    }

    /// The rustls error behind a ureq error: ureq reports it directly or inside an IO error.
    fn rustls_error(error: &ureq::Error) -> Option<&rustls::Error> {
        match error {
            ureq::Error::Rustls(error) => Some(error),
            ureq::Error::Io(error) => error.get_ref()?.downcast_ref(),
            _ => None,
        }
    }

    /// Connects and sends nothing.
    async fn silent_client(addr: SocketAddr) -> TcpStream {
        TcpStream::connect(addr).await.expect("connect")
    }

    #[tokio::test]
    async fn a_client_trusting_the_hub_ca_gets_an_answer_over_https() {
        let ca = Ca::generate("Test CA").expect("CA");
        let (addr, _server) = serve_ping(&ca, Limits::default()).await;
        assert_eq!(get_ping(addr, &ca).await.expect("GET /ping"), "pong");
        // The connection is kept alive and a second request works too.
        assert_eq!(get_ping(addr, &ca).await.expect("GET /ping again"), "pong");
    }

    #[tokio::test]
    async fn a_client_trusting_another_ca_is_refused() {
        let ca = Ca::generate("Test CA").expect("CA");
        let other = Ca::generate("Other CA").expect("other CA");
        let (addr, _server) = serve_ping(&ca, Limits::default()).await;
        let error = get_ping(addr, &other)
            .await
            .expect_err("an untrusted server");
        assert_eq!(
            rustls_error(&error),
            Some(&rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            )),
            "{error:?}"
        );
        // The server is unharmed.
        assert_eq!(get_ping(addr, &ca).await.expect("GET /ping"), "pong");
    }

    #[tokio::test]
    async fn silent_clients_do_not_delay_the_next_one() {
        let ca = Ca::generate("Test CA").expect("CA");
        let (addr, _server) = serve_ping(&ca, Limits::default()).await;
        let mut silent = Vec::new();
        for _ in 0..8 {
            silent.push(silent_client(addr).await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        assert_eq!(get_ping(addr, &ca).await.expect("GET /ping"), "pong");
        // Well under the handshake timeout: nobody waited for the silent clients.
        assert!(
            started.elapsed() < HANDSHAKE_TIMEOUT / 2,
            "{:?}",
            started.elapsed()
        );
        drop(silent);
    }

    #[tokio::test]
    async fn handshakes_beyond_the_limit_wait_for_a_free_slot() {
        // The control for the test above: with one slot, a silent client does delay the next.
        let ca = Ca::generate("Test CA").expect("CA");
        let limits = Limits {
            handshake_timeout: Duration::from_secs(1),
            max_handshakes: 1,
        };
        let (addr, _server) = serve_ping(&ca, limits).await;
        let _silent = silent_client(addr).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        assert_eq!(get_ping(addr, &ca).await.expect("GET /ping"), "pong");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(500), "{waited:?}");
        assert!(waited < PATIENCE, "{waited:?}");
    }

    #[tokio::test]
    async fn a_silent_client_is_disconnected_after_the_handshake_timeout() {
        let ca = Ca::generate("Test CA").expect("CA");
        let limits = Limits {
            handshake_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let (addr, _server) = serve_ping(&ca, limits).await;
        let mut silent = silent_client(addr).await;
        let started = Instant::now();
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(PATIENCE, silent.read(&mut buf))
            .await
            .expect("the server closes the connection");
        assert!(
            matches!(read, Ok(0)) || read.is_err(),
            "expected the connection to close, got {read:?}"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn plain_http_to_the_tls_port_gets_no_http_answer() {
        let ca = Ca::generate("Test CA").expect("CA");
        let (addr, _server) = serve_ping(&ca, Limits::default()).await;
        let mut plain = TcpStream::connect(addr).await.expect("connect");
        plain
            .write_all(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut answer = Vec::new();
        let read = tokio::time::timeout(PATIENCE, plain.read_to_end(&mut answer))
            .await
            .expect("the server closes the connection");
        assert!(
            read.is_ok() || answer.is_empty(),
            "unexpected read error {read:?}"
        );
        assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
        assert!(!answer.windows(4).any(|w| w == b"pong"), "{answer:?}");
        // What rustls sends instead, if anything, is a TLS alert record.
        assert!(answer.is_empty() || answer[0] == 0x15, "{answer:?}");
    }
}
