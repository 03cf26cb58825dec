//! Requests to one agent and its responses: from the hub over `rpc/req`/`rpc/resp`, and from
//! the local CLI (`shoal-agent ps`, `apply`, ...) over the agent's Unix socket. One path for
//! both; the agent refuses the local-only requests when they come from the network.

use super::envelope::sealed::Sealed;
use super::{
    check_name, check_optional_name, v2, DesiredState, DesiredWorkload, Message, MessageKind,
    NodeStatus, WireError,
};

/// A request to the agent whose node the topic names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcRequest {
    /// Chosen by the hub, unique among its requests in flight; responses carry it back.
    pub id: u64,
    pub body: RpcRequestBody,
}

/// Variants are append-only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RpcRequestBody {
    /// A container's log; answered by one or more `LogChunk`s, the last with `eof`.
    Logs {
        workload: String,
        /// The workload's only or first container when `None`.
        container: Option<String>,
        /// The last this many lines; the whole retained log when `None`.
        tail: Option<u32>,
        /// Keep sending new lines until the hub cancels or the container stops.
        follow: bool,
    },
    /// Runs a command inside a running container; answered by one `ExecResult`.
    Exec {
        workload: String,
        /// The workload's only or first container when `None`.
        container: Option<String>,
        /// Program and arguments; not empty.
        command: Vec<String>,
    },
    /// The agent's own view of itself, in text; answered by `Diagnostics`.
    Diagnostics,
    Ping,
    /// What runs on the node now; answered by `Status`.
    Status,
    /// Local only: make these workloads the node's desired state (`shoal-agent apply`, for
    /// devices with no hub); answered by `Applied`.
    Apply {
        workloads: Vec<DesiredWorkload>,
    },
    /// Local only: remove one workload from the locally applied desired state; answered by
    /// `Done`.
    DeleteWorkload {
        workload: String,
    },
    /// The images in the node's store; answered by `Images`.
    ListImages,
    /// Local only: import an OCI layout or `docker save` tarball at this path on the device;
    /// answered by `Images` with what was imported.
    ImportImage {
        path: String,
    },
    /// Local only: remove an image that no container uses; answered by `Done`.
    RemoveImage {
        reference: String,
    },
    /// Local only: remove every image no container uses; answered by `Done`.
    PruneImages,
    /// Stops the answers to the earlier request `id` of the same requester (a `Logs` with
    /// `follow`); answered by `Done`, or by `Error` when nothing with that id is running.
    Cancel {
        id: u64,
    },
}

impl RpcRequestBody {
    /// Whether only the local CLI (root on the device) may make this request: it changes
    /// what runs, which over the network only the hub's signed desired state may do.
    pub fn is_local_only(&self) -> bool {
        matches!(
            self,
            RpcRequestBody::Apply { .. }
                | RpcRequestBody::DeleteWorkload { .. }
                | RpcRequestBody::ImportImage { .. }
                | RpcRequestBody::RemoveImage { .. }
                | RpcRequestBody::PruneImages
        )
    }
}

/// The agent's answer to the request with the same `id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcResponse {
    pub id: u64,
    pub body: RpcResponseBody,
}

/// Variants are append-only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RpcResponseBody {
    LogChunk {
        data: Vec<u8>,
        /// No more chunks follow for this request.
        eof: bool,
    },
    ExecResult {
        /// The exit status; 128 + signal number when a signal ended the command.
        exit_code: i32,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
    },
    Diagnostics {
        text: String,
    },
    Pong,
    /// The request failed; the message says why and what to do.
    Error {
        message: String,
    },
    Status(NodeStatus),
    /// The new local desired state's generation, and one line per change it makes.
    Applied {
        generation: u64,
        changes: Vec<String>,
    },
    Images(Vec<ImageSummary>),
    /// A request that changes something succeeded; the message says what it did.
    Done {
        message: String,
    },
}

/// One image in an agent's store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSummary {
    pub reference: String,
    /// `sha256:...` of the image manifest.
    pub digest: String,
    pub size_bytes: u64,
    /// Containers that use it.
    pub in_use: u32,
}

impl Sealed for RpcRequest {
    type V2 = v2::RpcRequest;
    /// Unchanged in version 3.
    type V3 = v2::RpcRequest;

    fn to_v3(&self) -> v2::RpcRequest {
        self.to_v2()
    }

    fn from_v3(frozen: v2::RpcRequest) -> Result<Self, v2::Invalid> {
        Self::from_v2(frozen)
    }

    fn to_v2(&self) -> v2::RpcRequest {
        self.into()
    }

    fn from_v2(frozen: v2::RpcRequest) -> Result<Self, v2::Invalid> {
        frozen.try_into()
    }
}

impl Message for RpcRequest {
    const KIND: MessageKind = MessageKind::RpcRequest;

    fn node_id(&self) -> Option<&str> {
        None
    }

    fn check(&self) -> Result<(), WireError> {
        const KIND: MessageKind = MessageKind::RpcRequest;
        match &self.body {
            RpcRequestBody::Logs {
                workload,
                container,
                ..
            } => {
                check_name(KIND, "workload name", workload)?;
                check_optional_name(KIND, "container name", container.as_deref())
            }
            RpcRequestBody::Exec {
                workload,
                container,
                command,
            } => {
                check_name(KIND, "workload name", workload)?;
                check_optional_name(KIND, "container name", container.as_deref())?;
                if command.is_empty() {
                    return Err(WireError::Invalid {
                        kind: KIND,
                        reason: "exec needs a command to run".into(),
                    });
                }
                Ok(())
            }
            RpcRequestBody::Apply { workloads } => DesiredState {
                node_id: "local".into(),
                generation: 0,
                workloads: workloads.clone(),
                signing_keys: Vec::new(),
                agent: None,
            }
            .check(),
            RpcRequestBody::DeleteWorkload { workload } => {
                check_name(KIND, "workload name", workload)
            }
            RpcRequestBody::ImportImage { path } => {
                if path.is_empty() || path.contains('\0') {
                    return Err(WireError::Invalid {
                        kind: KIND,
                        reason: "the image archive path is empty or has a NUL byte".into(),
                    });
                }
                Ok(())
            }
            RpcRequestBody::RemoveImage { reference } => {
                crate::manifest::image::ImageRef::parse(reference)
                    .map(|_| ())
                    .map_err(|reason| WireError::Invalid { kind: KIND, reason })
            }
            RpcRequestBody::Diagnostics
            | RpcRequestBody::Ping
            | RpcRequestBody::Status
            | RpcRequestBody::ListImages
            | RpcRequestBody::PruneImages
            | RpcRequestBody::Cancel { .. } => Ok(()),
        }
    }
}

impl Sealed for RpcResponse {
    type V2 = v2::RpcResponse;
    /// Unchanged in version 3.
    type V3 = v2::RpcResponse;

    fn to_v3(&self) -> v2::RpcResponse {
        self.to_v2()
    }

    fn from_v3(frozen: v2::RpcResponse) -> Result<Self, v2::Invalid> {
        Self::from_v2(frozen)
    }

    fn to_v2(&self) -> v2::RpcResponse {
        self.into()
    }

    fn from_v2(frozen: v2::RpcResponse) -> Result<Self, v2::Invalid> {
        Ok(frozen.into())
    }
}

impl Message for RpcResponse {
    const KIND: MessageKind = MessageKind::RpcResponse;

    fn node_id(&self) -> Option<&str> {
        None
    }

    fn check(&self) -> Result<(), WireError> {
        match &self.body {
            RpcResponseBody::Status(status) => {
                super::status::check_reported_by_agent(MessageKind::RpcResponse, &status.events)
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: RpcRequestBody) -> Result<(), String> {
        RpcRequest { id: 1, body }
            .check()
            .map_err(|e| e.to_string())
    }

    fn exec(workload: &str, container: Option<&str>, command: &[&str]) -> RpcRequestBody {
        RpcRequestBody::Exec {
            workload: workload.into(),
            container: container.map(Into::into),
            command: command.iter().map(|c| (*c).into()).collect(),
        }
    }

    fn logs(workload: &str, container: Option<&str>) -> RpcRequestBody {
        RpcRequestBody::Logs {
            workload: workload.into(),
            container: container.map(Into::into),
            tail: Some(100),
            follow: false,
        }
    }

    #[test]
    fn rpc_requests_with_valid_names_pass() {
        for body in [
            logs("sensor-reader", None),
            logs("sensor-reader", Some("reader")),
            exec("db", Some("db"), &["ls", "/"]),
            RpcRequestBody::Diagnostics,
            RpcRequestBody::Ping,
            RpcRequestBody::Cancel { id: 7 },
        ] {
            assert_eq!(check(body), Ok(()));
        }
    }

    #[test]
    fn the_hub_may_cancel_a_request() {
        assert!(!RpcRequestBody::Cancel { id: 1 }.is_local_only());
    }

    #[test]
    fn rpc_request_checks_reject_bad_names_and_empty_commands() {
        let cases = [
            (logs("../x", None), "workload name `../x`"),
            (logs("w", Some("C")), "container name `C`"),
            (exec("w", None, &[]), "exec needs a command"),
            (exec("", None, &["ls"]), "workload name ``"),
        ];
        for (body, expected) in cases {
            let error = check(body).expect_err(expected);
            assert!(error.starts_with("invalid rpc request: "), "{error}");
            assert!(
                error.contains(expected),
                "{error} should mention {expected}"
            );
        }
    }
}
