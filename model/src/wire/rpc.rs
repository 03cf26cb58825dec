//! Requests from the hub to one agent and the agent's responses: logs, exec, diagnostics, ping.

use serde::{Deserialize, Serialize};

use super::{check_name, check_optional_name, Message, MessageKind, WireError};

/// A request to the agent whose node the topic names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcRequest {
    /// Chosen by the hub, unique among its requests in flight; responses carry it back.
    pub id: u64,
    pub body: RpcRequestBody,
}

/// Variants are append-only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// The agent's answer to the request with the same `id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcResponse {
    pub id: u64,
    pub body: RpcResponseBody,
}

/// Variants are append-only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
            RpcRequestBody::Diagnostics | RpcRequestBody::Ping => Ok(()),
        }
    }
}

impl Message for RpcResponse {
    const KIND: MessageKind = MessageKind::RpcResponse;

    fn node_id(&self) -> Option<&str> {
        None
    }

    fn check(&self) -> Result<(), WireError> {
        Ok(())
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
        ] {
            assert_eq!(check(body), Ok(()));
        }
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
