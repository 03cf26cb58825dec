//! RPC over MQTT: which requests the network may make, and answers cut to the size limit.

use shoal_model::wire::{self, Limits, RpcRequestBody, RpcResponse, RpcResponseBody, WireError};

/// Marks exec output whose beginning was cut to fit an rpc response.
const CUT: &[u8] = b"[... output cut to fit the rpc response size limit ...]\n";

/// Why the hub may not make this request: `None` for requests it may make.
pub fn refusal(body: &RpcRequestBody) -> Option<String> {
    if !body.is_local_only() {
        return None;
    }
    let what = match body {
        RpcRequestBody::Apply { .. } => "apply",
        RpcRequestBody::DeleteWorkload { .. } => "delete",
        RpcRequestBody::ImportImage { .. } => "images import",
        RpcRequestBody::RemoveImage { .. } => "images rm",
        RpcRequestBody::PruneImages => "images prune",
        _ => "this request",
    };
    Some(format!(
        "`{what}` is only allowed from the device's local CLI (`shoal-agent {what}` as root on the device); from the hub, change the node's desired state instead"
    ))
}

/// `RpcResponse { id, body }` encoded for `node`, as one or more messages that each fit
/// `limits.rpc_response`: a log chunk too big for one message is cut into several (only the
/// last keeps `eof`), exec output too big keeps its end, anything else too big becomes an
/// error saying so. In wire `version`: the hub's (see `Session::hub_wire`). Pure.
pub fn encode(
    (version, node): (u8, &str),
    id: u64,
    body: RpcResponseBody,
    limits: &Limits,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    encode_into((version, node), id, body, limits, &mut out);
    out
}

fn encode_into(
    (version, node): (u8, &str),
    id: u64,
    body: RpcResponseBody,
    limits: &Limits,
    out: &mut Vec<Vec<u8>>,
) {
    let response = RpcResponse { id, body };
    let size = match wire::encode_in(version, node, &response, limits) {
        Ok(bytes) => {
            out.push(bytes);
            return;
        }
        Err(WireError::TooLarge { size, .. }) => size,
        Err(e) => {
            let message = format!("cannot send the answer: {e}");
            if let Ok(bytes) = wire::encode_in(version, node, &error(id, message), limits) {
                out.push(bytes);
            }
            return;
        }
    };
    match response.body {
        RpcResponseBody::LogChunk { mut data, eof } if data.len() > 1 => {
            let second = data.split_off(data.len() / 2);
            encode_into(
                (version, node),
                id,
                RpcResponseBody::LogChunk { data, eof: false },
                limits,
                out,
            );
            encode_into(
                (version, node),
                id,
                RpcResponseBody::LogChunk { data: second, eof },
                limits,
                out,
            );
        }
        RpcResponseBody::ExecResult {
            exit_code,
            stdout,
            stderr,
        } if stdout.len() + stderr.len() > 2 * CUT.len() => {
            let excess = size.saturating_sub(limits.rpc_response) + 2 * CUT.len() + 64;
            let (stdout, stderr) = if stdout.len() >= stderr.len() {
                (keep_end(stdout, excess), stderr)
            } else {
                (stdout, keep_end(stderr, excess))
            };
            encode_into(
                (version, node),
                id,
                RpcResponseBody::ExecResult {
                    exit_code,
                    stdout,
                    stderr,
                },
                limits,
                out,
            );
        }
        _ => {
            let message = format!(
                "the answer is {size} bytes, over the {} bytes an rpc response may have; ask for less (a shorter tail, a narrower command)",
                limits.rpc_response
            );
            if let Ok(bytes) = wire::encode_in(version, node, &error(id, message), limits) {
                out.push(bytes);
            }
        }
    }
}

/// `data` without its first `excess` bytes (at least half of it goes), after a marker.
fn keep_end(data: Vec<u8>, excess: usize) -> Vec<u8> {
    let cut = excess.max(data.len() / 2).min(data.len());
    let mut kept = CUT.to_vec();
    kept.extend_from_slice(&data[cut..]);
    kept
}

fn error(id: u64, message: String) -> RpcResponse {
    RpcResponse {
        id,
        body: RpcResponseBody::Error { message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rpc_response: usize) -> Limits {
        Limits {
            rpc_response,
            ..Limits::default()
        }
    }

    fn decode(bytes: &[Vec<u8>], limits: &Limits) -> Vec<RpcResponse> {
        bytes
            .iter()
            .map(|b| {
                assert!(b.len() <= limits.rpc_response, "{} bytes", b.len());
                wire::decode::<RpcResponse>(b, limits).expect("decodes").1
            })
            .collect()
    }

    #[test]
    fn requests_that_change_what_runs_are_refused_from_the_network() {
        let apply = RpcRequestBody::Apply {
            workloads: Vec::new(),
        };
        let refused = refusal(&apply).expect("refused");
        assert!(
            refused.contains("only allowed from the device's local CLI"),
            "{refused}"
        );
        for body in [
            RpcRequestBody::Status,
            RpcRequestBody::Ping,
            RpcRequestBody::Cancel { id: 1 },
        ] {
            assert_eq!(refusal(&body), None, "{body:?}");
        }
        let prune = refusal(&RpcRequestBody::PruneImages).expect("refused");
        assert!(prune.starts_with("`images prune`"), "{prune}");
    }

    #[test]
    fn a_log_chunk_too_big_for_one_message_is_cut_in_order_with_one_eof() {
        let limits = limits(1000);
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let bytes = encode(
            (wire::WIRE_VERSION, "n1"),
            9,
            RpcResponseBody::LogChunk {
                data: data.clone(),
                eof: true,
            },
            &limits,
        );
        let responses = decode(&bytes, &limits);
        assert!(responses.len() > 5, "{} messages", responses.len());
        let mut joined = Vec::new();
        for (i, response) in responses.iter().enumerate() {
            assert_eq!(response.id, 9);
            let RpcResponseBody::LogChunk { data, eof } = &response.body else {
                panic!("{response:?}");
            };
            assert_eq!(*eof, i + 1 == responses.len());
            joined.extend_from_slice(data);
        }
        assert_eq!(joined, data);
    }

    #[test]
    fn exec_output_too_big_keeps_its_end() {
        let limits = limits(2000);
        let stdout: Vec<u8> = (0..10_000).map(|i| b'a' + (i % 26) as u8).collect();
        let bytes = encode(
            (wire::WIRE_VERSION, "n1"),
            3,
            RpcResponseBody::ExecResult {
                exit_code: 0,
                stdout: stdout.clone(),
                stderr: b"warn".to_vec(),
            },
            &limits,
        );
        let responses = decode(&bytes, &limits);
        assert_eq!(responses.len(), 1);
        let RpcResponseBody::ExecResult {
            stdout: got,
            stderr,
            ..
        } = &responses[0].body
        else {
            panic!("{responses:?}");
        };
        assert!(got.starts_with(CUT));
        assert!(stdout.ends_with(&got[CUT.len()..]));
        assert_eq!(stderr, b"warn");
    }

    #[test]
    fn any_other_answer_too_big_becomes_an_error_that_fits() {
        let limits = limits(300);
        let bytes = encode(
            (wire::WIRE_VERSION, "n1"),
            4,
            RpcResponseBody::Diagnostics {
                text: "x".repeat(1000),
            },
            &limits,
        );
        let responses = decode(&bytes, &limits);
        let RpcResponseBody::Error { message } = &responses[0].body else {
            panic!("{responses:?}");
        };
        assert!(message.contains("over the 300 bytes"), "{message}");
    }

    #[test]
    fn an_answer_that_fits_is_sent_as_is() {
        let limits = Limits::default();
        let bytes = encode(
            (wire::WIRE_VERSION, "n1"),
            1,
            RpcResponseBody::Pong,
            &limits,
        );
        assert_eq!(
            decode(&bytes, &limits),
            [RpcResponse {
                id: 1,
                body: RpcResponseBody::Pong
            }]
        );
    }
}
