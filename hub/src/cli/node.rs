//! `shoal node add|remove|label|cordon|uncordon|drain|list`: enroll and remove nodes and
//! manage what the hub decides about them.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use anyhow::bail;
use shoal_model::api::{Done, LabelRequest, NodeAddRequest, NodeEnrollment, NodeInfo};
use shoal_model::endpoint::ApiUrl;
use shoal_model::manifest::names::{check_dns_label, check_label_key, check_label_value};
use shoal_model::quantity::parse_duration;

use super::client::{segment, Client, HubArgs};
use super::get;
use super::output::{self, Format};

/// Enroll nodes, label them, cordon, uncordon or drain them
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Register a node and print its one-time enrollment token (again for an existing node:
    /// a new token, e.g. for a replaced or wiped device)
    Add {
        /// The node's name (its MQTT user name and client id)
        name: String,
        /// Hub-side labels, as k=v,k2=v2 (for a new node)
        #[arg(long, value_name = "K=V,...")]
        labels: Option<String>,
        /// How long the token works, e.g. 30m, 24h, 7d
        #[arg(long, value_name = "DURATION", default_value = "24h")]
        ttl: String,
    },
    /// Remove a node: its credentials stop working and its connection is closed at once
    Remove { name: String },
    /// Set (k=v) or remove (k-) hub-side labels of a node
    Label {
        name: String,
        /// k=v to set, k- to remove
        #[arg(required = true, value_name = "K=V|K-")]
        changes: Vec<String>,
    },
    /// Place no new workloads on a node; what runs there stays
    Cordon { name: String },
    /// Place workloads on a node again
    Uncordon { name: String },
    /// Cordon a node and move its workloads off it
    Drain { name: String },
    /// List the nodes (as `shoal get nodes`)
    List {
        /// Output format (default: a table)
        #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
        output: Option<Format>,
        /// Add a LABELS column
        #[arg(long)]
        show_labels: bool,
    },
}

pub fn run(args: &Args, hub: &HubArgs) -> anyhow::Result<ExitCode> {
    if let Command::List {
        output,
        show_labels,
    } = &args.command
    {
        let list = get::Args {
            kind: get::Kind::Nodes,
            name: None,
            output: *output,
            watch: false,
            show_labels: *show_labels,
        };
        return get::run(&list, hub);
    }
    let client = Client::new(hub)?;
    match &args.command {
        Command::Add { name, labels, ttl } => {
            if let Err(message) = check_dns_label(name) {
                bail!("{message}");
            }
            let labels = match labels {
                Some(text) => parse_label_set(text).map_err(anyhow::Error::msg)?,
                None => BTreeMap::new(),
            };
            let ttl = parse_duration(ttl).map_err(|e| anyhow::anyhow!("--ttl: {e}"))?;
            let request = NodeAddRequest {
                name: name.clone(),
                labels,
                ttl_s: Some(ttl.as_secs().max(1)),
            };
            let enrollment: NodeEnrollment = client.post("/v1/nodes", &request)?;
            print!(
                "{}",
                enrollment_text(&enrollment, shoal_model::clock::wall_ms())
            );
            if let Some(warning) = local_address_warning(&enrollment.hub) {
                eprintln!("{warning}");
            }
        }
        Command::Remove { name } => {
            let done: Done = client.delete(&format!("/v1/nodes/{}", segment(name)))?;
            println!("{}", done.message);
        }
        Command::Label { name, changes } => {
            let request = parse_label_changes(changes).map_err(anyhow::Error::msg)?;
            let node: NodeInfo =
                client.post(&format!("/v1/nodes/{}/labels", segment(name)), &request)?;
            println!("node/{} labeled", node.name);
            println!("labels: {}", output::labels(&node.labels));
        }
        Command::Cordon { name } => print!("{}", schedule(&client, name, "cordon")?),
        Command::Uncordon { name } => print!("{}", schedule(&client, name, "uncordon")?),
        Command::Drain { name } => print!("{}", schedule(&client, name, "drain")?),
        Command::List { .. } => {}
    }
    Ok(ExitCode::SUCCESS)
}

fn schedule(client: &Client, name: &str, action: &str) -> anyhow::Result<String> {
    let node: NodeInfo = client.post_empty(&format!("/v1/nodes/{}/{action}", segment(name)))?;
    Ok(scheduling_report(&node, action))
}

/// `node/gw-1 cordoned`, and for a drain the workloads still placed there, if any.
pub fn scheduling_report(node: &NodeInfo, action: &str) -> String {
    let mut out = format!("node/{} {action}ed\n", node.name);
    if action == "drain" && !node.workloads.is_empty() {
        out.push_str(&format!(
            "still placed on it: {}\n",
            node.workloads.join(", ")
        ));
    }
    out
}

/// `k=v,k2=v2` (`--labels` of `node add`); an empty text is no label.
pub fn parse_label_set(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((key, value)) = item.split_once('=') else {
            return Err(format!("--labels: `{item}` is not KEY=VALUE"));
        };
        check_label(key, value).map_err(|m| format!("--labels: `{item}`: {m}"))?;
        if labels.insert(key.to_string(), value.to_string()).is_some() {
            return Err(format!("--labels: `{key}` is given more than once"));
        }
    }
    Ok(labels)
}

/// kubectl's label syntax: `k=v` sets, `k-` removes. Says which argument is wrong.
pub fn parse_label_changes(args: &[String]) -> Result<LabelRequest, String> {
    let mut request = LabelRequest::default();
    let mut seen = BTreeSet::new();
    for arg in args {
        let wrong = |message: String| format!("label argument `{arg}`: {message}");
        let key = if let Some((key, value)) = arg.split_once('=') {
            check_label(key, value).map_err(wrong)?;
            request.set.insert(key.to_string(), value.to_string());
            key
        } else if let Some(key) = arg.strip_suffix('-') {
            check_label_key(key).map_err(wrong)?;
            request.remove.push(key.to_string());
            key
        } else {
            return Err(wrong(
                "use KEY=VALUE to set a label or KEY- to remove one".to_string(),
            ));
        };
        if !seen.insert(key) {
            return Err(wrong(format!("`{key}` is given more than once")));
        }
    }
    Ok(request)
}

fn check_label(key: &str, value: &str) -> Result<(), String> {
    check_label_key(key)?;
    check_label_value(value)
}

/// What `node add` prints: the token, when it expires, and the command for the device.
pub fn enrollment_text(e: &NodeEnrollment, now_ms: u64) -> String {
    let minutes = e.expires_ms.saturating_sub(now_ms).div_ceil(60_000);
    let expires = if minutes >= 120 {
        format!("{} h", minutes.div_ceil(60))
    } else {
        format!("{minutes} min")
    };
    format!(
        "node/{name} can enroll once, within {expires}, with this token (shown only now):\n\
         \x20 {token}\n\
         \n\
         on the device, as root:\n\
         \x20 shoal-agent enroll --hub {hub} --token {token}\n\
         \x20 shoal-agent run\n",
        name = e.name,
        token = e.token,
        hub = e.hub,
    )
}

/// A note when the address the hub reports is one that only the hub's own machine can connect
/// to (an unspecified or loopback host).
pub fn local_address_warning(hub: &ApiUrl) -> Option<String> {
    let local = hub.host().is_loopback() || hub.host().is_unspecified();
    local.then(|| {
        format!(
            "note: the hub reports its address as {hub}, which only an agent on the hub's own machine can reach: for another node, start the hub with --listen-api and --advertise addresses the node can reach"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn label_arguments_set_with_equals_and_remove_with_a_dash() {
        let request = parse_label_changes(&strings(&[
            "role=gateway",
            "example.com/site=north",
            "old-",
            "empty=",
        ]))
        .expect("valid");
        assert_eq!(
            request.set,
            [
                ("role".to_string(), "gateway".to_string()),
                ("example.com/site".to_string(), "north".to_string()),
                ("empty".to_string(), String::new()),
            ]
            .into()
        );
        assert_eq!(request.remove, vec!["old".to_string()]);
    }

    #[test]
    fn a_wrong_label_argument_is_named_with_the_reason() {
        let cases = [
            (
                "neither_set_nor_remove",
                "role",
                "label argument `role`: use KEY=VALUE to set a label or KEY- to remove one",
            ),
            (
                "bad_value",
                "role=gate way",
                "label argument `role=gate way`: `gate way` is not a valid label value",
            ),
            (
                "bad_key",
                "-x=1",
                "label argument `-x=1`: `-x` is not a valid label key",
            ),
            (
                "bad_prefix",
                "Ex!/a=1",
                "label argument `Ex!/a=1`: `Ex!/a` has an invalid prefix",
            ),
            (
                "bad_removed_key",
                "a b-",
                "label argument `a b-`: `a b` is not a valid label key",
            ),
            (
                "just_a_dash",
                "-",
                "label argument `-`: `` is not a valid label key",
            ),
        ];
        for (name, arg, expected) in cases {
            let error = parse_label_changes(&strings(&["ok=1", arg])).expect_err(name);
            assert!(error.starts_with(expected), "{name}: {error}");
        }
    }

    #[test]
    fn a_label_key_given_twice_is_refused() {
        let cases: [(&str, &[&str]); 3] = [
            ("set_and_removed", &["role=a", "role-"]),
            ("removed_then_set", &["role-", "role=a"]),
            ("set_twice", &["role=a", "role=b"]),
        ];
        for (name, args) in cases {
            let error = parse_label_changes(&strings(args)).expect_err(name);
            assert!(
                error.ends_with("`role` is given more than once"),
                "{name}: {error}"
            );
        }
    }

    #[test]
    fn labels_of_node_add_are_comma_separated_pairs() {
        assert_eq!(parse_label_set(""), Ok(BTreeMap::new()));
        assert_eq!(
            parse_label_set("role=gateway, site=north,"),
            Ok([
                ("role".to_string(), "gateway".to_string()),
                ("site".to_string(), "north".to_string()),
            ]
            .into())
        );
        let cases = [
            ("not_a_pair", "role", "--labels: `role` is not KEY=VALUE"),
            (
                "removal_is_not_allowed",
                "role-",
                "--labels: `role-` is not KEY=VALUE",
            ),
            (
                "bad_value",
                "role=a b",
                "--labels: `role=a b`: `a b` is not a valid label value",
            ),
            (
                "duplicate",
                "a=1,a=2",
                "--labels: `a` is given more than once",
            ),
        ];
        for (name, text, expected) in cases {
            let error = parse_label_set(text).expect_err(name);
            assert!(error.starts_with(expected), "{name}: {error}");
        }
    }

    #[test]
    fn enrollment_prints_the_token_its_lifetime_and_the_device_commands() {
        let enrollment = NodeEnrollment {
            name: "gw-1".into(),
            token: "shoal1.gw-1.SECRET.CA".into(),
            expires_ms: 24 * 3_600_000,
            hub: "https://hub.example:7440".parse().expect("a hub url"),
        };
        assert_eq!(
            enrollment_text(&enrollment, 0),
            "node/gw-1 can enroll once, within 24 h, with this token (shown only now):\n\
             \x20 shoal1.gw-1.SECRET.CA\n\
             \n\
             on the device, as root:\n\
             \x20 shoal-agent enroll --hub https://hub.example:7440 --token shoal1.gw-1.SECRET.CA\n\
             \x20 shoal-agent run\n"
        );
        assert!(enrollment_text(&enrollment, 24 * 3_600_000 - 90_000).contains("within 2 min"));
    }

    #[test]
    fn a_hub_address_a_node_cannot_reach_is_flagged() {
        let cases = [
            ("unspecified", "http://0.0.0.0:7440", true),
            ("loopback", "http://127.0.0.1:7440", true),
            ("another_loopback", "http://127.0.1.1:7440", true),
            ("localhost", "http://localhost:7440", true),
            ("ipv6_unspecified", "http://[::]:7440", true),
            ("ipv6_loopback", "https://[::1]:7440", true),
            ("lan_address", "https://192.168.1.10:7440", false),
            ("host_name", "https://hub.example:7440", false),
            ("ipv6_address", "https://[fd00::1]:7440", false),
        ];
        let warning = |url: &str| local_address_warning(&url.parse().expect("a hub url"));
        for (name, hub, flagged) in cases {
            assert_eq!(warning(hub).is_some(), flagged, "{name}");
        }
        assert_eq!(
            warning("http://0.0.0.0:7440").as_deref(),
            Some("note: the hub reports its address as http://0.0.0.0:7440, which only an agent on the hub's own machine can reach: for another node, start the hub with --listen-api and --advertise addresses the node can reach")
        );
    }

    #[test]
    fn a_drain_says_what_is_still_placed_on_the_node() {
        let node = NodeInfo {
            name: "gw-1".into(),
            online: true,
            status: "Ready,SchedulingDisabled".into(),
            schedulable: "drained".into(),
            labels: BTreeMap::new(),
            facts: None,
            created_ms: 0,
            last_seen_ms: None,
            offline_since_ms: None,
            desired_generation: 1,
            observed_generation: 1,
            workloads: vec!["agent-metrics".into()],
            agent_update: None,
        };
        assert_eq!(
            scheduling_report(&node, "drain"),
            "node/gw-1 drained\nstill placed on it: agent-metrics\n"
        );
        assert_eq!(scheduling_report(&node, "cordon"), "node/gw-1 cordoned\n");
        assert_eq!(
            scheduling_report(&node, "uncordon"),
            "node/gw-1 uncordoned\n"
        );
    }
}
