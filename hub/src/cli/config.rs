//! The CLI's config file: named contexts (a hub's URL, its CA certificate and the file its API
//! token is in), and which one is current, so that `shoal get nodes` finds the hub that
//! `shoal serve` or `shoal up` just started, with no flags.
//!
//! Where it lives: `$SHOAL_CONFIG`, else `$XDG_CONFIG_HOME/shoal/config.toml`, else
//! `$HOME/.config/shoal/config.toml`, else, for root without HOME (a hub a service manager
//! started), `/root/.config/shoal/config.toml`.
//!
//! ```toml
//! version = 1
//! current = "local"
//!
//! [contexts.local]
//! hub = "https://127.0.0.1:7440"
//! ca = "/var/lib/shoal/tls/ca.crt"
//! token_file = "/var/lib/shoal/api-token"
//! ```
//!
//! The file holds paths, never a secret. It is versioned: a file without `version = 1`, or with
//! another version, is refused with the position of the problem rather than half understood.
//! Writers ([`update`]) change one context under a lock and replace the file atomically, so
//! two hubs starting at once keep both their contexts.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use shoal_model::endpoint::ApiUrl;

/// The config file's format version that this CLI reads and writes.
pub const VERSION: i64 = 1;
/// Names the config file, over the XDG and HOME defaults.
pub const CONFIG_ENV: &str = "SHOAL_CONFIG";
/// Picks a context when `--context` is not given.
pub const CONTEXT_ENV: &str = "SHOAL_CONTEXT";
/// A config file larger than this is refused unread (it holds a few paths per hub).
const MAX_BYTES: u64 = 1 << 20;
/// Longest context name.
const MAX_NAME: usize = 63;

/// What the config file says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// The context used when none is named; it may name a context that is gone, which is an
    /// error only when it is used.
    pub current: Option<String>,
    pub contexts: BTreeMap<String, Context>,
}

/// One hub, as the CLI reaches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    pub hub: ApiUrl,
    /// The hub's CA certificate, for an `https://` hub; without it the usual public roots.
    pub ca: Option<PathBuf>,
    /// The file holding the API token.
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot tell where the CLI config lives: set SHOAL_CONFIG, XDG_CONFIG_HOME or HOME")]
    NoPath,
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is larger than {} bytes: is it a shoal CLI config? (set SHOAL_CONFIG to use another file)", path.display(), MAX_BYTES)]
    TooLarge { path: PathBuf },
    /// Anything wrong inside the file, at a position in it.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no context `{name}` in {}: see `shoal context list`", path.display())]
    UnknownContext { name: String, path: PathBuf },
    #[error("context `{name}` is not a valid name: use 1 to {MAX_NAME} letters, digits, `-`, `_` or `.`")]
    BadName { name: String },
}

/// Where the config file is: `SHOAL_CONFIG`, else under `XDG_CONFIG_HOME` (when absolute, as
/// the XDG spec asks), else under `HOME`, else under `/root` for root (a hub started by a
/// service manager often has no HOME). Empty values count as unset, and so does a HOME of `/`
/// (system users): there is no config then.
pub fn path_from(
    shoal_config: Option<OsString>,
    xdg_config_home: Option<OsString>,
    home: Option<OsString>,
    is_root: bool,
) -> Option<PathBuf> {
    let set = |value: Option<OsString>| value.filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(path) = set(shoal_config) {
        return Some(path);
    }
    if let Some(dir) = set(xdg_config_home).filter(|d| d.is_absolute()) {
        return Some(dir.join("shoal/config.toml"));
    }
    match set(home) {
        Some(home) => Some(home).filter(|h| h.is_absolute() && h != Path::new("/")),
        None => is_root.then(|| PathBuf::from("/root")),
    }
    .map(|home| home.join(".config/shoal/config.toml"))
}

/// [`path_from`] with this process's environment.
pub fn path() -> Result<PathBuf, ConfigError> {
    use std::os::unix::fs::MetadataExt;
    // The owner of /proc/self is this process's effective user.
    let is_root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    path_from(
        std::env::var_os(CONFIG_ENV),
        std::env::var_os("XDG_CONFIG_HOME"),
        std::env::var_os("HOME"),
        is_root,
    )
    .ok_or(ConfigError::NoPath)
}

/// Checks a context's name: it appears in tables and on command lines.
pub fn check_name(name: &str) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(ConfigError::BadName {
            name: name.escape_debug().to_string(),
        })
    }
}

/// Only `version`, read first, so that a newer file is refused for its version rather than
/// for the fields this CLI does not know.
#[derive(Deserialize)]
struct Probe {
    version: Option<toml::Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[allow(dead_code)]
    version: i64,
    current: Option<toml::Spanned<String>>,
    #[serde(default)]
    contexts: BTreeMap<toml::Spanned<String>, RawContext>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContext {
    hub: toml::Spanned<String>,
    ca: Option<PathBuf>,
    token_file: Option<PathBuf>,
}

/// Parses the text of the config file at `path` (named in errors, and the base of relative
/// paths in it).
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let at = |span: Option<std::ops::Range<usize>>, message: String| {
        let (line, column) = line_column(text, span.map_or(0, |s| s.start));
        ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            column,
            message,
        }
    };
    let probe: Probe = toml::from_str(text).map_err(|e| at(e.span(), e.message().to_string()))?;
    let Some(version) = probe.version else {
        return Err(at(
            None,
            format!("no `version = {VERSION}`: a shoal CLI config starts with it"),
        ));
    };
    if version.get_ref().as_integer() != Some(VERSION) {
        return Err(at(
            Some(version.span()),
            format!(
                "config version {} is not one this shoal reads (it reads version {VERSION}): upgrade shoal, or set SHOAL_CONFIG to another file",
                text.get(version.span()).unwrap_or("?").trim()
            ),
        ));
    }
    let raw: RawFile = toml::from_str(text).map_err(|e| at(e.span(), e.message().to_string()))?;
    let base = path.parent().unwrap_or(Path::new("/"));
    let mut contexts = BTreeMap::new();
    for (name, context) in raw.contexts {
        check_name(name.get_ref()).map_err(|e| at(Some(name.span()), e.to_string()))?;
        let hub: ApiUrl = context
            .hub
            .get_ref()
            .parse()
            .map_err(|e| at(Some(context.hub.span()), format!("hub: {e}")))?;
        contexts.insert(
            name.into_inner(),
            Context {
                hub,
                ca: context.ca.map(|p| base.join(p)),
                token_file: context.token_file.map(|p| base.join(p)),
            },
        );
    }
    Ok(Config {
        current: raw.current.map(toml::Spanned::into_inner),
        contexts,
    })
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |at| at + 1);
    (line, before[start..].chars().count() + 1)
}

/// The file's text for `config`: what [`parse`] reads back as the same config.
pub fn render(config: &Config) -> String {
    let mut out = format!(
        "# The shoal CLI's contexts. `shoal serve` and `shoal up` add their own; `shoal context use NAME` picks one.\nversion = {VERSION}\n"
    );
    if let Some(current) = &config.current {
        out.push_str(&format!("current = {}\n", quote(current)));
    }
    for (name, context) in &config.contexts {
        out.push_str(&format!("\n[contexts.{}]\n", quote(name)));
        out.push_str(&format!("hub = {}\n", quote(&context.hub.to_string())));
        if let Some(ca) = &context.ca {
            out.push_str(&format!("ca = {}\n", quote(&ca.to_string_lossy())));
        }
        if let Some(token_file) = &context.token_file {
            out.push_str(&format!(
                "token_file = {}\n",
                quote(&token_file.to_string_lossy())
            ));
        }
    }
    out
}

/// A TOML basic string.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Reads and parses the config file; `None` when there is none.
pub fn load(path: &Path) -> Result<Option<Config>, ConfigError> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let regular = file.metadata().is_ok_and(|m| m.is_file());
    if !regular {
        // A FIFO or a device would block or never end.
        return Err(ConfigError::Read {
            path: path.to_path_buf(),
            source: std::io::Error::other("not a regular file"),
        });
    }
    let mut text = String::new();
    file.take(MAX_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if text.len() as u64 > MAX_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    parse(path, &text).map(Some)
}

/// Changes the config file under an exclusive lock (`config.toml.lock` beside it): reads it
/// (an empty config when there is none), applies `change` and replaces the file atomically.
/// Only what `change` touches changes; a file that does not parse is left alone.
pub fn update(
    path: &Path,
    change: impl FnOnce(&mut Config) -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    let write_error = |source| ConfigError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(write_error)?;
    }
    let mut lock_name = path.as_os_str().to_owned();
    lock_name.push(".lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(PathBuf::from(lock_name))
        .map_err(write_error)?;
    lock.lock().map_err(write_error)?;
    let mut config = load(path)?.unwrap_or_default();
    change(&mut config)?;
    replace(path, render(&config).as_bytes()).map_err(write_error)
    // The lock is released when `lock` is dropped.
}

/// Writes `bytes` to a temporary file beside `path` (0600), syncs it and renames it over
/// `path`: readers see the old file or the new one, never half of one.
fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut temp_name = path.as_os_str().to_owned();
    temp_name.push(format!(".{}.tmp", std::process::id()));
    let temp = PathBuf::from(temp_name);
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// Adds or replaces the context `name` and makes it current: what `shoal serve` and `shoal up`
/// do for the hub they start. Returns the config file's path.
pub fn record(name: &str, context: Context) -> Result<PathBuf, ConfigError> {
    check_name(name)?;
    let path = path()?;
    update(&path, |config| {
        config.contexts.insert(name.to_string(), context);
        config.current = Some(name.to_string());
        Ok(())
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(hub: &str) -> Context {
        Context {
            hub: hub.parse().expect("url"),
            ca: Some(PathBuf::from("/var/lib/shoal/tls/ca.crt")),
            token_file: Some(PathBuf::from("/var/lib/shoal/api-token")),
        }
    }

    #[test]
    fn the_config_lives_where_shoal_config_then_xdg_then_home_say() {
        let os = |s: &str| Some(OsString::from(s));
        let root_config = Some("/root/.config/shoal/config.toml");
        let home_a = Some("/home/a/.config/shoal/config.toml");
        let cases = [
            (
                os("/etc/x.toml"),
                os("/xdg"),
                os("/home/a"),
                false,
                Some("/etc/x.toml"),
            ),
            (
                None,
                os("/xdg"),
                os("/home/a"),
                false,
                Some("/xdg/shoal/config.toml"),
            ),
            (os(""), os(""), os("/root"), true, root_config),
            (None, os("relative"), os("/home/a"), false, home_a),
            (None, None, os("/home/a"), true, home_a),
            (None, None, None, false, None),
            (None, None, None, true, root_config),
            (None, None, os("/"), false, None),
            (None, None, os("/"), true, None),
            (None, None, os("relative"), false, None),
        ];
        for (shoal, xdg, home, is_root, expected) in cases {
            assert_eq!(
                path_from(shoal.clone(), xdg.clone(), home.clone(), is_root),
                expected.map(PathBuf::from),
                "{shoal:?} {xdg:?} {home:?} root {is_root}"
            );
        }
    }

    #[test]
    fn a_rendered_config_parses_back_to_itself() {
        let mut config = Config {
            current: Some("local".into()),
            contexts: BTreeMap::new(),
        };
        config
            .contexts
            .insert("local".into(), context("https://127.0.0.1:7440"));
        let mut odd = context("http://[::1]:7440");
        odd.ca = Some(PathBuf::from("/tmp/a \"quoted\"\\dir\n/ca.crt"));
        odd.token_file = None;
        config.contexts.insert("lab-2.x_y".into(), odd);
        let path = Path::new("/etc/shoal/config.toml");
        assert_eq!(parse(path, &render(&config)).expect("parses"), config);
        assert_eq!(
            parse(path, &render(&Config::default())).expect("parses"),
            Config::default()
        );
    }

    #[test]
    fn relative_paths_are_relative_to_the_config_file() {
        let text = "version = 1\n[contexts.a]\nhub = \"http://127.0.0.1:7440\"\nca = \"tls/ca.crt\"\ntoken_file = \"/abs/token\"\n";
        let config = parse(Path::new("/etc/shoal/config.toml"), text).expect("parses");
        let a = &config.contexts["a"];
        assert_eq!(a.ca.as_deref(), Some(Path::new("/etc/shoal/tls/ca.crt")));
        assert_eq!(a.token_file.as_deref(), Some(Path::new("/abs/token")));
    }

    #[test]
    fn a_broken_or_foreign_config_is_refused_with_file_line_and_column() {
        let cases = [
            ("not_toml", "version = 1\ncurrent = \n", "2:11:", "string"),
            (
                "no_version",
                "current = \"a\"\n",
                "1:1:",
                "no `version = 1`",
            ),
            (
                "a_newer_version",
                "\n\nversion = 2\n[contexts.a]\nfuture = true\n",
                "3:11:",
                "config version 2 is not one this shoal reads (it reads version 1)",
            ),
            (
                "a_string_version",
                "version = \"1\"\n",
                "1:11:",
                "config version \"1\"",
            ),
            (
                "an_unknown_field",
                "version = 1\n[contexts.a]\nhub = \"http://127.0.0.1:1\"\ntoken = \"s3cret\"\n",
                "4:1:",
                "unknown field `token`",
            ),
            (
                "a_bad_hub_url",
                "version = 1\n[contexts.a]\nhub = \"mqtt://hub:1883\"\n",
                "3:7:",
                "hub: `mqtt://hub:1883` is not a hub API url: unsupported scheme `mqtt`",
            ),
            (
                "a_context_without_a_hub",
                "version = 1\n[contexts.a]\nca = \"/x\"\n",
                "2:1:",
                "missing field `hub`",
            ),
            (
                "a_hostile_context_name",
                "version = 1\n[contexts.\"a\\nb\"]\nhub = \"http://127.0.0.1:1\"\n",
                "2:11:",
                "context `a\\nb` is not a valid name",
            ),
        ];
        for (name, text, position, message) in cases {
            let error = parse(Path::new("/h/config.toml"), text)
                .expect_err(name)
                .to_string();
            assert!(
                error.starts_with(&format!("/h/config.toml:{position} ")),
                "{name}: {error}"
            );
            assert!(error.contains(message), "{name}: {error}");
        }
    }

    #[test]
    fn update_changes_one_context_and_keeps_the_others() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sub/config.toml");
        update(&path, |c| {
            c.contexts
                .insert("other".into(), context("https://hub.example:7440"));
            c.current = Some("other".into());
            Ok(())
        })
        .expect("first write");
        update(&path, |c| {
            c.contexts
                .insert("local".into(), context("http://127.0.0.1:7440"));
            c.current = Some("local".into());
            Ok(())
        })
        .expect("second write");
        let config = load(&path).expect("loads").expect("exists");
        assert_eq!(config.current.as_deref(), Some("local"));
        assert_eq!(
            config.contexts.keys().collect::<Vec<_>>(),
            ["local", "other"]
        );
        assert_eq!(
            config.contexts["other"],
            context("https://hub.example:7440")
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn update_leaves_a_broken_file_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "version = 1\n[contexts\n").expect("write");
        let error = update(&path, |_| Ok(())).expect_err("broken");
        assert!(error.to_string().contains("config.toml:2:"), "{error}");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "version = 1\n[contexts\n"
        );
    }

    #[test]
    fn deep_nesting_and_odd_files_are_errors_not_crashes() {
        let path = Path::new("/h/config.toml");
        let deep = format!("version = 1\nx = {}", "[".repeat(100_000));
        assert!(parse(path, &deep).is_err());
        let deep_tables = format!("version = 1\nx = {}", "{ a = ".repeat(100_000));
        assert!(parse(path, &deep_tables).is_err());
        let error = load(Path::new("/dev/null")).expect_err("not a regular file");
        assert_eq!(
            error.to_string(),
            "cannot read /dev/null: not a regular file"
        );
        let error = load(Path::new("/")).expect_err("a dir");
        assert!(error.to_string().starts_with("cannot read /: "), "{error}");
    }

    #[test]
    fn a_missing_file_is_no_config_and_a_huge_one_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("config.toml");
        assert_eq!(load(&path).expect("no file"), None);
        std::fs::write(
            &path,
            "#".repeat(usize::try_from(MAX_BYTES).expect("fits") + 1),
        )
        .expect("write");
        assert!(matches!(load(&path), Err(ConfigError::TooLarge { .. })));
    }
}
