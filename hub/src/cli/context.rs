//! `shoal context list|use|show`: the CLI config's contexts ([`super::config`]).

use std::process::ExitCode;

use super::client::{CaFrom, HubArgs, Target, TokenFrom};
use super::config::{self, Config, ConfigError};

/// List the hubs this CLI knows (its contexts), pick one, or show what it uses now
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List the contexts; `*` marks the current one
    List,
    /// Make NAME the current context
    Use {
        /// A context from `shoal context list`
        name: String,
    },
    /// Show the hub, CA and token file this CLI uses now, and where each comes from
    Show,
}

pub fn run(args: &Args, hub: &HubArgs) -> anyhow::Result<ExitCode> {
    let path = config::path()?;
    match &args.command {
        Command::List => match config::load(&path)? {
            Some(config) if !config.contexts.is_empty() => print!("{}", table(&config)),
            _ => println!(
                "no contexts in {}: `shoal serve` and `shoal up` write one",
                path.display()
            ),
        },
        Command::Use { name } => {
            let mut hub_url = String::new();
            config::update(&path, |config| match config.contexts.get(name) {
                Some(context) => {
                    hub_url = context.hub.to_string();
                    config.current = Some(name.clone());
                    Ok(())
                }
                None => Err(ConfigError::UnknownContext {
                    name: name.clone(),
                    path: path.clone(),
                }),
            })?;
            println!(
                "current context: {name} (hub {hub_url}), in {}",
                path.display()
            );
        }
        Command::Show => print!("{}", show(&hub.target()?)),
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per context, the current one marked.
pub fn table(config: &Config) -> String {
    let rows: Vec<Vec<String>> = config
        .contexts
        .iter()
        .map(|(name, context)| {
            let current = config.current.as_deref() == Some(name.as_str());
            let path = |p: &Option<std::path::PathBuf>| {
                p.as_ref()
                    .map_or_else(|| "-".to_string(), |p| p.display().to_string())
            };
            vec![
                if current { "*" } else { "" }.to_string(),
                name.clone(),
                context.hub.to_string(),
                path(&context.ca),
                path(&context.token_file),
            ]
        })
        .collect();
    shoal_model::table::render(&["CURRENT", "NAME", "HUB", "CA", "TOKEN FILE"], &rows)
}

/// What [`HubArgs::target`] settled on, in words.
pub fn show(target: &Target) -> String {
    let context = match &target.context {
        Some((name, path)) => format!("{name} (in {})", path.display()),
        None => "none (no config file, or no current context)".to_string(),
    };
    let token = match &target.token {
        TokenFrom::Given(_) => "given by --token or SHOAL_TOKEN".to_string(),
        TokenFrom::Files(files) => format!(
            "read from the first of {}",
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let ca = match &target.ca {
        CaFrom::File(path) => path.display().to_string(),
        CaFrom::Search => format!(
            "the first of {} (else the public roots)",
            super::client::CA_FILES.join(", ")
        ),
        CaFrom::PublicRoots => "the public roots".to_string(),
    };
    format!(
        "context: {context}\nhub:     {}\nca:      {ca}\ntoken:   {token}\n",
        target.url
    )
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::cli::config::Context;

    #[test]
    fn the_list_marks_the_current_context() {
        let mut config = Config {
            current: Some("local".into()),
            ..Config::default()
        };
        config.contexts.insert(
            "local".into(),
            Context {
                hub: "https://127.0.0.1:7440".parse().expect("url"),
                ca: Some("/d/tls/ca.crt".into()),
                token_file: Some("/d/api-token".into()),
            },
        );
        config.contexts.insert(
            "edge".into(),
            Context {
                hub: "https://hub.example".parse().expect("url"),
                ca: None,
                token_file: None,
            },
        );
        assert_eq!(
            table(&config),
            "CURRENT   NAME    HUB                      CA              TOKEN FILE\n\
             \x20         edge    https://hub.example      -               -\n\
             *         local   https://127.0.0.1:7440   /d/tls/ca.crt   /d/api-token\n"
        );
    }

    #[test]
    fn show_says_where_each_setting_comes_from() {
        let target = Target {
            url: "https://127.0.0.1:7440".parse().expect("url"),
            token: TokenFrom::Files(vec!["/d/api-token".into()]),
            ca: CaFrom::File("/d/tls/ca.crt".into()),
            context: Some((
                "local".into(),
                PathBuf::from("/h/.config/shoal/config.toml"),
            )),
        };
        assert_eq!(
            show(&target),
            "context: local (in /h/.config/shoal/config.toml)\n\
             hub:     https://127.0.0.1:7440\n\
             ca:      /d/tls/ca.crt\n\
             token:   read from the first of /d/api-token\n"
        );
    }
}
