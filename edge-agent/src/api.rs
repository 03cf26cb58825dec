//! The local API: the agent's Unix socket (`<run_dir>/agent.sock`, mode 0600, so root only)
//! serving `shoal-agent ps`, `apply`, `logs`, ... with the same RPC messages the hub sends
//! over MQTT (`shoal_model::wire::RpcRequest`/`RpcResponse`), one path for both.
//!
//! Framing: each message is a 4-byte big-endian length, then the wire encoding (version byte
//! and envelope). A connection carries one request and its responses: a single response, or
//! for logs a stream of `LogChunk`s ending with `eof`.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::Path;
use std::time::Duration;

use shoal_model::wire::{self, Limits, RpcRequest, RpcRequestBody, RpcResponse, RpcResponseBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

/// The node id written into local envelopes (the socket needs no other).
const LOCAL: &str = "local";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot reach the agent at {path}: {source}; is `shoal-agent run` running (as root)?")]
    Connect {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {path}: {source}")]
    Listen {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the connection to the agent failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the agent sent a message this CLI cannot read: {0}; are the CLI and the agent the same version?")]
    Wire(#[from] wire::WireError),
    #[error("a message of {0} bytes is over the limit")]
    TooLarge(usize),
}

/// A request from a connection, and where its responses go.
#[derive(Debug)]
pub struct Incoming {
    pub request: RpcRequest,
    pub reply: mpsc::Sender<RpcResponseBody>,
}

/// Binds the socket (replacing a stale one) with mode 0600.
pub fn bind(path: &Path) -> Result<UnixListener, ApiError> {
    let failed = |source| ApiError::Listen {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(failed(e)),
        _ => {}
    }
    let listener = UnixListener::bind(path).map_err(failed)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(failed)?;
    Ok(listener)
}

/// Accepts connections forever, handing each request to `requests`.
pub async fn serve(listener: UnixListener, requests: mpsc::Sender<Incoming>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, requests.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "local API accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connection(mut stream: UnixStream, requests: mpsc::Sender<Incoming>) {
    let limits = Limits::default();
    let request = match read_frame_async(&mut stream, limits.rpc_request).await {
        Ok(bytes) => match wire::decode::<RpcRequest>(&bytes, &limits) {
            Ok((envelope, request)) => (envelope.version, request),
            Err(e) => {
                let body = RpcResponseBody::Error {
                    message: format!("bad request: {e}"),
                };
                let to = (wire::OLDEST_WIRE_VERSION, 0);
                let _ = write_response_async(&mut stream, to, body, &limits).await;
                return;
            }
        },
        Err(e) => {
            tracing::debug!(error = %e, "local API read failed");
            return;
        }
    };
    // Answered in the version the CLI wrote: a CLI of another release than the daemon (a
    // binary replaced on disk before the daemon restarts) still reads the answer.
    let (version, request) = request;
    let id = request.id;
    let (reply, mut responses) = mpsc::channel(16);
    if requests.send(Incoming { request, reply }).await.is_err() {
        return;
    }
    while let Some(body) = responses.recv().await {
        if let Err(e) = write_response_async(&mut stream, (version, id), body, &limits).await {
            tracing::debug!(error = %e, "local API client went away");
            return;
        }
    }
}

async fn write_response_async(
    stream: &mut UnixStream,
    (version, id): (u8, u64),
    body: RpcResponseBody,
    limits: &Limits,
) -> Result<(), ApiError> {
    let bytes = wire::encode_in(version, LOCAL, &RpcResponse { id, body }, limits)?;
    let len = u32::try_from(bytes.len()).map_err(|_| ApiError::TooLarge(bytes.len()))?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(&bytes).await?;
    Ok(())
}

async fn read_frame_async(stream: &mut UnixStream, limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > limit {
        return Err(ApiError::TooLarge(len));
    }
    let mut bytes = vec![0u8; len];
    stream.read_exact(&mut bytes).await?;
    Ok(bytes)
}

/// The CLI's side: a blocking connection carrying one request.
#[derive(Debug)]
pub struct Client {
    stream: StdUnixStream,
    limits: Limits,
}

impl Client {
    /// Connects and sends `body`.
    pub fn request(socket: &Path, body: RpcRequestBody) -> Result<Client, ApiError> {
        let mut stream = StdUnixStream::connect(socket).map_err(|source| ApiError::Connect {
            path: socket.display().to_string(),
            source,
        })?;
        let limits = Limits::default();
        // The oldest version this build writes, which the daemon reads whether it is of this
        // release or of the one before (after an upgrade on disk, before its restart).
        let request = RpcRequest { id: 1, body };
        let bytes = wire::encode_in(wire::OLDEST_WIRE_VERSION, LOCAL, &request, &limits)?;
        let len = u32::try_from(bytes.len()).map_err(|_| ApiError::TooLarge(bytes.len()))?;
        stream.write_all(&len.to_be_bytes())?;
        stream.write_all(&bytes)?;
        Ok(Client { stream, limits })
    }

    /// The next response, or `None` when the agent closed the connection.
    pub fn next(&mut self) -> Result<Option<RpcResponseBody>, ApiError> {
        let mut len = [0u8; 4];
        match self.stream.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > self.limits.rpc_response {
            return Err(ApiError::TooLarge(len));
        }
        let mut bytes = vec![0u8; len];
        self.stream.read_exact(&mut bytes)?;
        let (_, response) = wire::decode::<RpcResponse>(&bytes, &self.limits)?;
        Ok(Some(response.body))
    }

    /// Sends `body` and returns the single response.
    pub fn call(socket: &Path, body: RpcRequestBody) -> Result<RpcResponseBody, ApiError> {
        let mut client = Client::request(socket, body)?;
        client.next()?.ok_or_else(|| {
            ApiError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the agent closed the connection without answering",
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_reaches_the_server_and_its_responses_come_back_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("run/agent.sock");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime.block_on(async { bind(&socket) }).expect("bind");
        let mode = std::fs::metadata(&socket)
            .expect("socket")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "only root may talk to the agent");
        let (tx, mut rx) = mpsc::channel(4);
        let (client_done, done) = std::sync::mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            runtime.block_on(async move {
                tokio::spawn(serve(listener, tx));
                let incoming: Incoming = rx.recv().await.expect("one request");
                assert_eq!(incoming.request.body, RpcRequestBody::Status);
                for i in 0..3u8 {
                    let body = RpcResponseBody::LogChunk {
                        data: vec![i],
                        eof: i == 2,
                    };
                    incoming.reply.send(body).await.expect("send");
                }
                drop(incoming);
                // Keep serving until the client has read everything.
                tokio::task::spawn_blocking(move || done.recv())
                    .await
                    .expect("join")
                    .expect("client done");
            });
        });
        let mut client = Client::request(&socket, RpcRequestBody::Status).expect("connect");
        let mut got = Vec::new();
        while let Some(RpcResponseBody::LogChunk { data, eof }) = client.next().expect("read") {
            got.extend(data);
            if eof {
                break;
            }
        }
        assert_eq!(got, [0, 1, 2]);
        client_done.send(()).expect("signal");
        server.join().expect("server thread");
    }

    #[test]
    fn connecting_with_no_agent_says_what_to_do() {
        let err = Client::call(Path::new("/nonexistent/agent.sock"), RpcRequestBody::Ping)
            .expect_err("no agent");
        assert!(
            err.to_string().contains("is `shoal-agent run` running"),
            "{err}"
        );
    }
}
