//! `shoal key list|rotate`: the hub's desired-state signing keys.
//!
//! Rotation in two steps, so no node is ever left with a key it cannot verify:
//! 1. `shoal key rotate` makes a `next` key. Every node's next desired state, still signed
//!    by the active key, announces both keys; each node stores them with that state.
//! 2. Once every enrolled node has reported that state (`shoal key list` shows who has), the
//!    hub promotes the next key on its own: it signs from then on, the states it signs
//!    announce only it, nodes forget the old key, and the old private key is erased.
//!
//! `shoal key rotate --finish` promotes at once; nodes that had not taken the next key then
//! refuse the hub's states (and say so in their events) until they enroll again.
//!
//! `shoal key rotate --release` rotates the key agent releases are signed with, in one step:
//! the old key signs the new one (a bridge every node that trusts it accepts with its next
//! agent target), is retired, and every stored release is signed again with the new key.

use std::process::ExitCode;

use shoal_model::api::{KeyInfo, RotateRequest};

use super::client::{Client, HubArgs};

/// List or rotate the keys the hub signs desired states and agent releases with
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List the keys (state keys, then release keys): active, next (with the nodes that have
    /// it) and retired
    List,
    /// Start a rotation to a new state key; it finishes by itself once every node has the key
    Rotate {
        /// Finish the rotation under way now, without waiting for every node
        #[arg(long, conflicts_with = "release")]
        finish: bool,
        /// Rotate the release key instead, in one step (every release is signed again)
        #[arg(long)]
        release: bool,
    },
}

pub fn run(args: &Args, hub: &HubArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(hub)?;
    let keys: Vec<KeyInfo> = match args.command {
        Command::List => client.get("/v1/keys", &[("kinds", "all")])?,
        Command::Rotate { finish, release } => {
            let mut keys: Vec<KeyInfo> =
                client.post("/v1/keys/rotate", &RotateRequest { finish, release })?;
            if !keys.iter().any(|k| k.kind == "release") {
                // A state-key rotation answers with the state keys; list them all.
                keys = client.get("/v1/keys", &[("kinds", "all")])?;
            }
            keys
        }
    };
    print!("{}", table(&keys));
    Ok(ExitCode::SUCCESS)
}

/// One line per key, newest first; a next key lists the nodes still without it.
pub fn table(keys: &[KeyInfo]) -> String {
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|key| {
            let nodes = if key.state == "next" {
                let total = key.confirmed.len() + key.waiting.len();
                let mut text = format!("{}/{total} have it", key.confirmed.len());
                if !key.waiting.is_empty() {
                    text.push_str(&format!(" (waiting for {})", key.waiting.join(", ")));
                }
                text
            } else {
                "-".to_string()
            };
            vec![key.id.clone(), key.state.clone(), key.kind.clone(), nodes]
        })
        .collect();
    shoal_model::table::render(&["ID", "STATE", "KIND", "NODES"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, state: &str, confirmed: &[&str], waiting: &[&str]) -> KeyInfo {
        KeyInfo {
            id: id.into(),
            kind: "state".into(),
            public: String::new(),
            state: state.into(),
            created_ms: 0,
            changed_ms: 0,
            confirmed: confirmed.iter().map(|s| s.to_string()).collect(),
            waiting: waiting.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_table_shows_who_still_waits_for_the_next_key() {
        let keys = [
            key("00112233aabbccdd", "next", &["a"], &["b", "c"]),
            key("ffeeddccbbaa9988", "active", &[], &[]),
            KeyInfo {
                kind: "release".into(),
                ..key("0123456789abcdef", "retired", &[], &[])
            },
        ];
        assert_eq!(
            table(&keys),
            "ID                 STATE     KIND      NODES\n\
             00112233aabbccdd   next      state     1/3 have it (waiting for b, c)\n\
             ffeeddccbbaa9988   active    state     -\n\
             0123456789abcdef   retired   release   -\n"
        );
    }
}
