//! Logging for `shoal`: `tracing` events to stderr, filtered by `SHOAL_LOG` (`info` for the
//! daemons, `warn` for the CLI commands when unset); as text, or one JSON object per line with
//! `--log-format json`. The embedded broker (rmqtt) logs through
//! the `log` crate; those records join the same output (targets `rmqtt`, `rmqtt_net`), so a
//! refused TLS handshake or a dropped connection shows up in the hub's log.

use tracing_subscriber::EnvFilter;

/// The environment variable holding the log filter.
pub const FILTER_ENV: &str = "SHOAL_LOG";

/// Whether the log is written as JSON lines (`shoal --log-format json`), set by `main`
/// before any command starts logging.
static JSON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes [`init`] write one JSON object per line instead of text.
pub fn write_json(json: bool) {
    JSON.store(json, std::sync::atomic::Ordering::Relaxed);
}

/// Installs the process-wide subscriber; `default` applies when `SHOAL_LOG` is unset.
pub fn init(default: &str) {
    let filter = EnvFilter::try_from_env(FILTER_ENV).unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `try_init` only fails when a subscriber is already installed, which leaves logging working.
    let _ = if JSON.load(std::sync::atomic::Ordering::Relaxed) {
        builder.json().try_init()
    } else {
        builder.with_ansi(ansi).try_init()
    };
}
