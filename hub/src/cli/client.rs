//! The CLI's side of the hub's HTTP API ([`shoal_model::api`]): where the hub is
//! ([`HubArgs`]), which token to send, and a small blocking [`Client`] whose errors say what
//! to do.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use shoal_model::api::{ApiError, DEFAULT_API_ADDR};
use shoal_model::endpoint::{ApiUrl, UrlError};

use super::config::{self, Config, ConfigError, Context};

/// Read when `--hub` is not given.
pub const HUB_ENV: &str = "SHOAL_HUB";
/// Read when `--token` is not given.
pub const TOKEN_ENV: &str = "SHOAL_TOKEN";
/// Where the token is looked for when neither `--token` nor `SHOAL_TOKEN` gives it: the data
/// dir of `shoal up`, then the default data dir of `shoal serve`.
pub const TOKEN_FILES: [&str; 2] = ["./.shoal/hub/api-token", "/var/lib/shoal/api-token"];
/// Read when `--ca` is not given.
pub const CA_ENV: &str = "SHOAL_CA";
/// The hub's CA certificate, looked for like the token, for `https://` hubs.
pub const CA_FILES: [&str; 2] = ["./.shoal/hub/tls/ca.crt", "/var/lib/shoal/tls/ca.crt"];

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// End to end, for every request but log streams.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read into memory (a large fleet's node list stays far below).
const MAX_ANSWER_BYTES: u64 = 64 << 20;
/// Largest error body quoted back when it is not an [`ApiError`].
const MAX_QUOTED_BYTES: usize = 200;

/// Where the hub is and how to authenticate: global options of every command that talks to
/// the hub. Each of them overrides the context's setting; a context (`--context`, else
/// `SHOAL_CONTEXT`, else the config's current one) is used unless the hub is named by `--hub`
/// or `SHOAL_HUB` alone.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct HubArgs {
    /// The hub's API, http(s)://host[:port] [env: SHOAL_HUB] [default: the context's hub, else
    /// http://127.0.0.1:7440]
    #[arg(long, global = true, value_name = "URL")]
    pub hub: Option<String>,
    /// The API token [env: SHOAL_TOKEN] [default: read from the context's token file, else
    /// ./.shoal/hub/api-token, then /var/lib/shoal/api-token]
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// The hub's CA certificate, to check an https:// hub [env: SHOAL_CA] [default: the
    /// context's, else ./.shoal/hub/tls/ca.crt, then /var/lib/shoal/tls/ca.crt]
    #[arg(long, global = true, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// The context (hub, CA and token file) from the CLI config to use [env: SHOAL_CONTEXT]
    /// [default: the current one]; `shoal serve` and `shoal up` write theirs under this name
    /// [default: `local` and `up`]
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
}

/// The environment variables that stand in for [`HubArgs`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HubEnv {
    pub hub: Option<String>,
    pub token: Option<String>,
    pub ca: Option<PathBuf>,
    pub context: Option<String>,
}

impl HubEnv {
    pub fn read() -> HubEnv {
        HubEnv {
            hub: non_empty_env(HUB_ENV),
            token: non_empty_env(TOKEN_ENV),
            ca: non_empty_env(CA_ENV).map(PathBuf::from),
            context: non_empty_env(config::CONTEXT_ENV),
        }
    }
}

/// Where the token comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenFrom {
    /// `--token` or `SHOAL_TOKEN`.
    Given(String),
    /// The first of these files that exists.
    Files(Vec<PathBuf>),
}

/// Which CA certificate checks an `https://` hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaFrom {
    /// `--ca`, `SHOAL_CA` or the context's.
    File(PathBuf),
    /// The first of [`CA_FILES`] that exists, else the public roots.
    Search,
    /// The public roots: a context without a CA.
    PublicRoots,
}

/// What the CLI uses, once flags, environment and the config are weighed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub url: ApiUrl,
    pub token: TokenFrom,
    pub ca: CaFrom,
    /// The context used, if any, and the config file it is in.
    pub context: Option<(String, PathBuf)>,
}

/// Weighs flags over environment over the context; `config` is the config file (its path and
/// contents, `None` when there is none), read only when [`needs_config`] says so.
pub fn choose(
    flags: &HubArgs,
    env: &HubEnv,
    config: Option<(&Path, Option<&Config>)>,
) -> Result<Target, HubError> {
    let named = flags.context.clone().or_else(|| env.context.clone());
    let context = match config {
        Some((path, file)) => {
            let name = named
                .clone()
                .or_else(|| file.and_then(|c| c.current.clone()));
            match name {
                Some(name) => match file.and_then(|c| c.contexts.get(&name)) {
                    Some(context) => Some((name, path.to_path_buf(), context.clone())),
                    None => {
                        return Err(HubError::Config(ConfigError::UnknownContext {
                            name,
                            path: path.to_path_buf(),
                        }))
                    }
                },
                None => None,
            }
        }
        None => None,
    };
    let url = match flags.hub.clone().or_else(|| env.hub.clone()) {
        Some(given) => given.parse()?,
        None => match &context {
            Some((_, _, context)) => context.hub.clone(),
            None => format!("http://{DEFAULT_API_ADDR}").parse()?,
        },
    };
    let token = match flags.token.clone().or_else(|| env.token.clone()) {
        Some(token) => TokenFrom::Given(token),
        None => match context.as_ref().and_then(|(_, _, c)| c.token_file.clone()) {
            Some(file) => TokenFrom::Files(vec![file]),
            None => TokenFrom::Files(TOKEN_FILES.iter().map(PathBuf::from).collect()),
        },
    };
    let ca = match flags.ca.clone().or_else(|| env.ca.clone()) {
        Some(path) => CaFrom::File(path),
        None => match &context {
            Some((_, _, Context { ca: Some(path), .. })) => CaFrom::File(path.clone()),
            Some(_) => CaFrom::PublicRoots,
            None => CaFrom::Search,
        },
    };
    Ok(Target {
        url,
        token,
        ca,
        context: context.map(|(name, path, _)| (name, path)),
    })
}

/// Whether the config file matters: a context is named, or the hub is not given (so the
/// current context may name it). With `--hub` or `SHOAL_HUB` alone it is not even read, so
/// scripts that name the hub do not depend on it.
pub fn needs_config(flags: &HubArgs, env: &HubEnv) -> bool {
    flags.context.is_some() || env.context.is_some() || (flags.hub.is_none() && env.hub.is_none())
}

impl HubArgs {
    /// Flags, then the environment, then the config file's context, then the defaults.
    pub fn target(&self) -> Result<Target, HubError> {
        let env = HubEnv::read();
        if !needs_config(self, &env) {
            return choose(self, &env, None);
        }
        let path = match config::path() {
            Ok(path) => path,
            // Without HOME there is no config to read, unless a context is asked for.
            Err(e) if self.context.is_some() || env.context.is_some() => return Err(e.into()),
            Err(_) => return choose(self, &env, None),
        };
        let file = config::load(&path)?;
        choose(self, &env, Some((&path, file.as_ref())))
    }

    /// The hub's URL, as [`HubArgs::target`] finds it.
    pub fn url(&self) -> Result<ApiUrl, HubError> {
        Ok(self.target()?.url)
    }
}

impl Target {
    /// The API token from the flag, the environment or the token file.
    pub fn token(&self) -> Result<String, HubError> {
        match &self.token {
            TokenFrom::Given(token) => resolve_token(Some(token), None, &[]),
            TokenFrom::Files(files) => resolve_token(None, None, files),
        }
    }

    /// The CA to trust for an `https://` hub; `None` trusts the usual public roots. An
    /// `http://` hub needs none, so none is read (a context's CA file may be gone).
    pub fn ca(&self) -> Result<Option<ureq::tls::Certificate<'static>>, HubError> {
        if !self.url.is_tls() {
            return Ok(None);
        }
        let path = match &self.ca {
            CaFrom::File(path) => path.clone(),
            CaFrom::PublicRoots => return Ok(None),
            CaFrom::Search => match CA_FILES.iter().map(PathBuf::from).find(|p| p.is_file()) {
                Some(path) => path,
                None => return Ok(None),
            },
        };
        let pem = std::fs::read(&path).map_err(|e| HubError::CaFile {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        ureq::tls::Certificate::from_pem(&pem)
            .map(Some)
            .map_err(|e| HubError::CaFile {
                path,
                reason: e.to_string(),
            })
    }
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// What went wrong talking to the hub, in words that say what to do.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{0}, with --hub or SHOAL_HUB")]
    BadUrl(#[from] UrlError),
    #[error("no API token: pass --token or set SHOAL_TOKEN, or start the hub with `shoal serve`, which writes a context for this CLI (the hub writes the token to `api-token` in its data dir; looked in {})", .0.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" and "))]
    NoToken(Vec<PathBuf>),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot read the API token from {}: {reason}: pass --token or SHOAL_TOKEN, or run as a user who can read it", path.display())]
    TokenFile { path: PathBuf, reason: String },
    #[error("cannot read the hub's CA certificate {}: {reason} (pass --ca or SHOAL_CA with the hub's tls/ca.crt)", path.display())]
    CaFile { path: PathBuf, reason: String },
    #[error("cannot reach the hub at {url} ({cause}): is `shoal serve` running? (set --hub or SHOAL_HUB; for https, --ca with the hub's tls/ca.crt)")]
    Unreachable { url: String, cause: String },
    #[error("the hub at {url} did not answer within {}s: is it overloaded, or is {url} another service?", REQUEST_TIMEOUT.as_secs())]
    Timeout { url: String },
    #[error("the hub refused the token: {message}")]
    Unauthorized { message: String },
    /// The hub's own error: its message, then one indented line per detail.
    #[error("{}", api_error_text(.0))]
    Api(ApiError),
    /// An answer without an [`ApiError`] body: from the HTTP layer (a malformed query), or
    /// from something that is not a Shoal hub.
    #[error("the hub answered HTTP {status}: {body}{}", if *foreign { ": is --hub pointing at a Shoal hub?" } else { "" })]
    Unexpected {
        status: u16,
        body: String,
        /// Looks like another service (a web page, an unknown route).
        foreign: bool,
    },
    #[error("the hub's answer to {path} is not what this CLI expects ({reason}): are the hub and the CLI the same version?")]
    BadAnswer { path: String, reason: String },
    #[error("talking to the hub at {url} failed: {cause}")]
    Transport { url: String, cause: String },
}

fn api_error_text(error: &ApiError) -> String {
    let mut text = error.error.clone();
    for detail in &error.details {
        text.push_str("\n  ");
        text.push_str(detail);
    }
    text
}

/// The token from the flag, the environment, or the first file that exists; a file that
/// exists but cannot be read, or is empty, is an error rather than a reason to look further.
pub fn resolve_token(
    flag: Option<&str>,
    env: Option<&str>,
    files: &[PathBuf],
) -> Result<String, HubError> {
    if let Some(token) = flag.or(env) {
        return Ok(token.trim().to_string());
    }
    for path in files {
        match std::fs::read_to_string(path) {
            Ok(text) if text.trim().is_empty() => {
                return Err(HubError::TokenFile {
                    path: path.clone(),
                    reason: "the file is empty".to_string(),
                })
            }
            Ok(text) => return Ok(text.trim().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(HubError::TokenFile {
                    path: path.clone(),
                    reason: e.to_string(),
                })
            }
        }
    }
    Err(HubError::NoToken(files.to_vec()))
}

/// Percent-encodes one path segment (a node or workload name as the user typed it), so that
/// `a/b` cannot reach another route.
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The error for an answer with a status outside 2xx, from its body.
pub fn error_from_status(status: u16, body: &[u8]) -> HubError {
    let api: Option<ApiError> = serde_json::from_slice(body).ok();
    match (status, api) {
        (401, api) => HubError::Unauthorized {
            message: api.map_or_else(
                || "pass the token from the hub's data dir (`api-token`) with --token or SHOAL_TOKEN".to_string(),
                |a| a.error,
            ),
        },
        (_, Some(api)) => HubError::Api(api),
        (status, None) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let mut quoted: String = text.chars().take(MAX_QUOTED_BYTES).collect();
            if quoted.len() < text.len() {
                quoted.push_str("...");
            }
            if quoted.is_empty() {
                quoted = "(no body)".to_string();
            }
            HubError::Unexpected {
                status,
                foreign: status == 404 || text.starts_with('<'),
                body: quoted,
            }
        }
    }
}

/// How long a log stream may stay silent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Ends when the hub has sent what there is: bounded waits.
    Bounded,
    /// Follows until interrupted: no timeout but the connect one.
    Follow,
}

/// A blocking client for the hub's API.
#[derive(Debug)]
pub struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
    ca: Option<ureq::tls::Certificate<'static>>,
}

impl Client {
    /// Resolves the address and the token; does not connect yet.
    pub fn new(args: &HubArgs) -> Result<Client, HubError> {
        let target = args.target()?;
        let base = target.url.to_string();
        let token = target.token()?;
        let ca = target.ca()?;
        Ok(Client {
            base,
            token,
            agent: agent(Some(REQUEST_TIMEOUT), None, None, ca.clone()),
            ca,
        })
    }

    /// `GET path?query`, decoding the JSON answer.
    pub fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, HubError> {
        let mut request = self
            .agent
            .get(self.url(path))
            .header("Authorization", self.bearer());
        for (key, value) in query {
            request = request.query(*key, *value);
        }
        let answer = request.call().map_err(|e| self.transport(e))?;
        self.decode(path, answer)
    }

    /// `POST path` with a JSON body, decoding the JSON answer.
    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, HubError> {
        let bytes = serde_json::to_vec(body).map_err(|e| HubError::Transport {
            url: self.base.clone(),
            cause: format!("cannot encode the request: {e}"),
        })?;
        let answer = self
            .agent
            .post(self.url(path))
            .header("Authorization", self.bearer())
            .content_type("application/json")
            .send(&bytes[..])
            .map_err(|e| self.transport(e))?;
        self.decode(path, answer)
    }

    /// `POST path?query` with `bytes` as an `application/octet-stream` body (an agent
    /// binary), decoding the JSON answer.
    pub fn post_bytes<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        bytes: &[u8],
    ) -> Result<T, HubError> {
        let mut request = self
            .agent
            .post(self.url(path))
            .header("Authorization", self.bearer())
            .content_type("application/octet-stream");
        for (key, value) in query {
            request = request.query(*key, *value);
        }
        let answer = request.send(bytes).map_err(|e| self.transport(e))?;
        self.decode(path, answer)
    }

    /// `POST path` without a body, decoding the JSON answer.
    pub fn post_empty<T: DeserializeOwned>(&self, path: &str) -> Result<T, HubError> {
        let answer = self
            .agent
            .post(self.url(path))
            .header("Authorization", self.bearer())
            .send_empty()
            .map_err(|e| self.transport(e))?;
        self.decode(path, answer)
    }

    /// `DELETE path`, decoding the JSON answer.
    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, HubError> {
        let answer = self
            .agent
            .delete(self.url(path))
            .header("Authorization", self.bearer())
            .call()
            .map_err(|e| self.transport(e))?;
        self.decode(path, answer)
    }

    /// `GET path?query` whose answer is read as it arrives (logs).
    pub fn get_stream(
        &self,
        path: &str,
        query: &[(&str, &str)],
        stream: Stream,
    ) -> Result<ureq::BodyReader<'static>, HubError> {
        let agent = match stream {
            Stream::Bounded => agent(
                None,
                Some(REQUEST_TIMEOUT),
                Some(REQUEST_TIMEOUT),
                self.ca.clone(),
            ),
            Stream::Follow => agent(None, None, None, self.ca.clone()),
        };
        let mut request = agent
            .get(self.url(path))
            .header("Authorization", self.bearer());
        for (key, value) in query {
            request = request.query(*key, *value);
        }
        let answer = request.call().map_err(|e| self.transport(e))?;
        let status = answer.status().as_u16();
        if !(200..300).contains(&status) {
            let body = self.read_body(answer)?;
            return Err(error_from_status(status, &body));
        }
        Ok(answer.into_body().into_reader())
    }

    /// The message for an error while reading a stream that had started.
    pub fn stream_error(&self, error: std::io::Error) -> HubError {
        match error.kind() {
            std::io::ErrorKind::TimedOut => HubError::Timeout {
                url: self.base.clone(),
            },
            _ => HubError::Transport {
                url: self.base.clone(),
                cause: format!("the stream broke: {error}"),
            },
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    fn read_body(&self, mut answer: ureq::http::Response<ureq::Body>) -> Result<Vec<u8>, HubError> {
        answer
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_vec()
            .map_err(|e| self.transport(e))
    }

    fn decode<T: DeserializeOwned>(
        &self,
        path: &str,
        answer: ureq::http::Response<ureq::Body>,
    ) -> Result<T, HubError> {
        let status = answer.status().as_u16();
        let body = self.read_body(answer)?;
        if !(200..300).contains(&status) {
            return Err(error_from_status(status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| HubError::BadAnswer {
            path: path.to_string(),
            reason: e.to_string(),
        })
    }

    fn transport(&self, error: ureq::Error) -> HubError {
        use std::io::ErrorKind;
        let url = self.base.clone();
        match error {
            ureq::Error::Io(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionRefused
                        | ErrorKind::HostUnreachable
                        | ErrorKind::NetworkUnreachable
                        | ErrorKind::AddrNotAvailable
                ) =>
            {
                HubError::Unreachable {
                    url,
                    cause: io_cause(&e),
                }
            }
            ureq::Error::ConnectionFailed => HubError::Unreachable {
                url,
                cause: "connection failed".to_string(),
            },
            ureq::Error::HostNotFound => HubError::Unreachable {
                url,
                cause: "host not found".to_string(),
            },
            ureq::Error::Timeout(_) => HubError::Timeout { url },
            ureq::Error::Io(e) if e.kind() == ErrorKind::TimedOut => HubError::Timeout { url },
            other => HubError::Transport {
                url,
                cause: other.to_string(),
            },
        }
    }
}

/// `Connection refused (os error 111)` -> `connection refused`.
fn io_cause(error: &std::io::Error) -> String {
    let text = error.to_string();
    let text = match text.find(" (os error") {
        Some(at) => &text[..at],
        None => &text,
    };
    text.to_lowercase()
}

/// An agent that reports error statuses as answers (their body says why) and never waits
/// without bound to connect.
fn agent(
    global: Option<Duration>,
    recv_response: Option<Duration>,
    per_read: Option<Duration>,
    ca: Option<ureq::tls::Certificate<'static>>,
) -> ureq::Agent {
    let mut tls = ureq::tls::TlsConfig::builder();
    if let Some(ca) = ca {
        tls = tls.root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(vec![
            ca,
        ])));
    }
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls.build())
        .user_agent(concat!("shoal/", env!("CARGO_PKG_VERSION")))
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_global(global)
        .timeout_recv_response(recv_response)
        .timeout_per_read(per_read)
        .build()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hub_url_is_the_flag_or_the_default_and_a_bad_one_says_where_it_came_from() {
        let args = |hub: &str| HubArgs {
            hub: Some(hub.to_string()),
            ..HubArgs::default()
        };
        let url = args("https://hub.example:7440/").url().expect("valid");
        assert_eq!(url.to_string(), "https://hub.example:7440");
        for (given, reason) in [
            ("mqtt://hub:1883", "unsupported scheme `mqtt`"),
            ("http://hub:7440/v1", "it must not have a path"),
            ("http://hub:+7440", "`+7440` is not a port number"),
        ] {
            let error = args(given).url().expect_err(given).to_string();
            assert!(
                error.starts_with(&format!("`{given}` is not a hub API url: {reason}")),
                "{error}"
            );
            assert!(error.ends_with(", with --hub or SHOAL_HUB"), "{error}");
        }
    }

    #[test]
    fn the_token_comes_from_the_flag_then_the_environment_then_the_first_file_found() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("missing");
        let first = dir.path().join("first");
        let second = dir.path().join("second");
        std::fs::write(&first, "tok-file-1\n").expect("write");
        std::fs::write(&second, "tok-file-2").expect("write");
        let files = [missing.clone(), first.clone(), second.clone()];

        let token = |flag, env, files: &[PathBuf]| {
            resolve_token(flag, env, files).map_err(|e| e.to_string())
        };
        assert_eq!(token(Some("flag"), Some("env"), &files), Ok("flag".into()));
        assert_eq!(token(None, Some("env"), &files), Ok("env".into()));
        assert_eq!(token(None, None, &files), Ok("tok-file-1".into()));
        assert_eq!(
            token(None, None, &files[..1]).map_err(|e| e.contains("no API token")),
            Err(true)
        );

        std::fs::write(&first, " \n").expect("write");
        let error = token(None, None, &files).expect_err("an empty file is an error");
        assert!(
            error.contains("the file is empty") && error.contains("first"),
            "{error}"
        );
    }

    /// A config with contexts `local` (current, with a CA and a token file) and `bare` (a hub
    /// only).
    fn two_contexts() -> Config {
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
            "bare".into(),
            Context {
                hub: "https://hub.example".parse().expect("url"),
                ca: None,
                token_file: None,
            },
        );
        config
    }

    #[test]
    fn flags_beat_the_environment_which_beats_the_context_which_beats_the_defaults() {
        let config = two_contexts();
        let file = Path::new("/c/config.toml");
        let default_files = TokenFrom::Files(TOKEN_FILES.iter().map(PathBuf::from).collect());
        let flags = |hub: Option<&str>,
                     token: Option<&str>,
                     ca: Option<&str>,
                     context: Option<&str>| HubArgs {
            hub: hub.map(Into::into),
            token: token.map(Into::into),
            ca: ca.map(Into::into),
            context: context.map(Into::into),
        };
        let none = HubArgs::default();
        let no_env = HubEnv::default();
        let env = HubEnv {
            hub: Some("http://10.0.0.1:7440".into()),
            token: Some("env-token".into()),
            ca: Some("/env/ca.crt".into()),
            context: None,
        };
        struct Case<'a> {
            name: &'a str,
            flags: HubArgs,
            env: HubEnv,
            config: Option<(&'a Path, Option<&'a Config>)>,
            expected: (&'a str, TokenFrom, CaFrom, Option<&'a str>),
        }
        let cases = [
            Case {
                name: "the_current_context_with_no_flags",
                flags: none.clone(),
                env: no_env.clone(),
                config: Some((file, Some(&config))),
                expected: (
                    "https://127.0.0.1:7440",
                    TokenFrom::Files(vec!["/d/api-token".into()]),
                    CaFrom::File("/d/tls/ca.crt".into()),
                    Some("local"),
                ),
            },
            Case {
                name: "a_context_by_flag_without_ca_or_token_file",
                flags: flags(None, None, None, Some("bare")),
                env: no_env.clone(),
                config: Some((file, Some(&config))),
                expected: (
                    "https://hub.example",
                    default_files.clone(),
                    CaFrom::PublicRoots,
                    Some("bare"),
                ),
            },
            Case {
                name: "flags_override_each_field_of_the_context",
                flags: flags(
                    Some("https://10.1.1.1:1"),
                    Some("flag-token"),
                    Some("/f/ca.crt"),
                    Some("local"),
                ),
                env: env.clone(),
                config: Some((file, Some(&config))),
                expected: (
                    "https://10.1.1.1:1",
                    TokenFrom::Given("flag-token".into()),
                    CaFrom::File("/f/ca.crt".into()),
                    Some("local"),
                ),
            },
            Case {
                name: "the_environment_overrides_the_context",
                flags: none.clone(),
                env: HubEnv {
                    hub: None,
                    ..env.clone()
                },
                config: Some((file, Some(&config))),
                expected: (
                    "https://127.0.0.1:7440",
                    TokenFrom::Given("env-token".into()),
                    CaFrom::File("/env/ca.crt".into()),
                    Some("local"),
                ),
            },
            Case {
                name: "no_config_file_keeps_the_old_defaults",
                flags: none.clone(),
                env: no_env.clone(),
                config: Some((file, None)),
                expected: (
                    "http://127.0.0.1:7440",
                    default_files.clone(),
                    CaFrom::Search,
                    None,
                ),
            },
            Case {
                name: "a_config_without_a_current_context_keeps_the_old_defaults",
                flags: none.clone(),
                env: no_env.clone(),
                config: Some((
                    file,
                    Some(&Config {
                        current: None,
                        ..config.clone()
                    }),
                )),
                expected: (
                    "http://127.0.0.1:7440",
                    default_files.clone(),
                    CaFrom::Search,
                    None,
                ),
            },
            Case {
                name: "a_hub_given_alone_leaves_the_config_unread",
                flags: none.clone(),
                env: env.clone(),
                config: None,
                expected: (
                    "http://10.0.0.1:7440",
                    TokenFrom::Given("env-token".into()),
                    CaFrom::File("/env/ca.crt".into()),
                    None,
                ),
            },
        ];
        for case in cases {
            let target = choose(&case.flags, &case.env, case.config).expect(case.name);
            let (url, token, ca, context) = case.expected;
            assert_eq!(target.url.to_string(), url, "{}", case.name);
            assert_eq!(target.token, token, "{}", case.name);
            assert_eq!(target.ca, ca, "{}", case.name);
            assert_eq!(
                target.context.map(|(name, _)| name).as_deref(),
                context,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn the_config_is_read_unless_the_hub_alone_is_given() {
        let hub = HubArgs {
            hub: Some("http://h:1".into()),
            ..HubArgs::default()
        };
        let env_hub = HubEnv {
            hub: Some("http://h:1".into()),
            ..HubEnv::default()
        };
        let env_context = HubEnv {
            context: Some("x".into()),
            ..env_hub.clone()
        };
        assert!(needs_config(&HubArgs::default(), &HubEnv::default()));
        assert!(!needs_config(&hub, &HubEnv::default()));
        assert!(!needs_config(&HubArgs::default(), &env_hub));
        assert!(needs_config(&HubArgs::default(), &env_context));
        assert!(needs_config(
            &HubArgs {
                context: Some("x".into()),
                ..hub
            },
            &HubEnv::default()
        ));
    }

    #[test]
    fn a_context_that_is_not_there_is_an_error_naming_the_file() {
        let config = two_contexts();
        let file = Path::new("/c/config.toml");
        let by_flag = HubArgs {
            context: Some("gone".into()),
            ..HubArgs::default()
        };
        let dangling = Config {
            current: Some("gone".into()),
            ..config.clone()
        };
        for (flags, config) in [
            (&by_flag, Some(&config)),
            (&by_flag, None),
            (&HubArgs::default(), Some(&dangling)),
        ] {
            let error = choose(flags, &HubEnv::default(), Some((file, config)))
                .expect_err("no such context")
                .to_string();
            assert_eq!(
                error,
                "no context `gone` in /c/config.toml: see `shoal context list`"
            );
        }
    }

    #[test]
    fn error_answers_become_messages_that_say_what_to_do() {
        let api =
            br#"{"error":"2 problems in manifests","details":["a.yaml:3:1: x","b.yaml:1:1: y"]}"#;
        let cases: [(&str, u16, &[u8], &str); 6] = [
            (
                "api_error_with_details_indented",
                422,
                api,
                "2 problems in manifests\n  a.yaml:3:1: x\n  b.yaml:1:1: y",
            ),
            (
                "api_error_without_details",
                404,
                br#"{"error":"no workload `web`"}"#,
                "no workload `web`",
            ),
            (
                "unauthorized_says_the_token_was_refused_and_why",
                401,
                br#"{"error":"wrong API token: use the one in api-token"}"#,
                "the hub refused the token: wrong API token: use the one in api-token",
            ),
            (
                "unauthorized_without_a_body_says_what_to_do",
                401,
                b"",
                "the hub refused the token: pass the token from the hub's data dir (`api-token`) with --token or SHOAL_TOKEN",
            ),
            (
                "a_rejection_from_the_http_layer_is_quoted",
                400,
                b"Failed to deserialize query string: tail: invalid digit",
                "the hub answered HTTP 400: Failed to deserialize query string: tail: invalid digit",
            ),
            (
                "something_else_answering",
                404,
                b"<html>not found</html>",
                "the hub answered HTTP 404: <html>not found</html>: is --hub pointing at a Shoal hub?",
            ),
        ];
        for (name, status, body, expected) in cases {
            assert_eq!(
                error_from_status(status, body).to_string(),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn long_foreign_error_bodies_are_cut() {
        let body = "x".repeat(1000);
        let text = error_from_status(500, body.as_bytes()).to_string();
        assert!(text.contains(&format!("{}...", "x".repeat(200))), "{text}");
        assert!(!text.contains(&"x".repeat(201)), "{text}");
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(segment("sensor-reader.v2_~"), "sensor-reader.v2_~");
        assert_eq!(segment("a/b"), "a%2Fb");
        assert_eq!(segment("../x y"), "..%2Fx%20y");
        assert_eq!(segment("é"), "%C3%A9");
    }

    #[test]
    fn a_refused_connection_says_to_start_the_hub() {
        // A port that nothing listens on: bind, read the port, close.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let args = HubArgs {
            hub: Some(format!("http://127.0.0.1:{port}")),
            token: Some("t".into()),
            ca: None,
            context: None,
        };
        let client = Client::new(&args).expect("client");
        let error = client
            .get::<serde_json::Value>("/v1/nodes", &[])
            .expect_err("nothing listens");
        assert_eq!(
            error.to_string(),
            format!("cannot reach the hub at http://127.0.0.1:{port} (connection refused): is `shoal serve` running? (set --hub or SHOAL_HUB; for https, --ca with the hub's tls/ca.crt)")
        );
    }

    #[test]
    fn requests_carry_the_bearer_token_and_error_bodies_are_read() {
        let (url, request) = serve_once("404 Not Found", r#"{"error":"no workload `web`"}"#);
        let client = Client::new(&HubArgs {
            hub: Some(url),
            token: Some("s3cret".into()),
            ca: None,
            context: None,
        })
        .expect("client");
        let error = client
            .get::<serde_json::Value>(
                &format!("/v1/workloads/{}", segment("web")),
                &[("tail", "5")],
            )
            .expect_err("404");
        assert_eq!(error.to_string(), "no workload `web`");
        let request = request.join().expect("server thread");
        assert!(
            request.starts_with("GET /v1/workloads/web?tail=5 HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request
                .to_lowercase()
                .contains("authorization: bearer s3cret\r\n"),
            "{request}"
        );
    }

    /// A one-shot HTTP server on loopback: answers the first request with this status and
    /// JSON body, and returns the request's head.
    fn serve_once(status: &str, body: &str) -> (String, std::thread::JoinHandle<String>) {
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if stream.read(&mut byte).expect("read") == 0 {
                    break;
                }
                head.push(byte[0]);
            }
            stream.write_all(answer.as_bytes()).expect("write");
            String::from_utf8_lossy(&head).into_owned()
        });
        (url, handle)
    }
}
