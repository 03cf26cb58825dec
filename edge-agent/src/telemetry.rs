//! Logging for the agent: `tracing` events to stderr, filtered by `SHOAL_LOG`
//! (`SHOAL_LOG=debug`, `SHOAL_LOG=shoal_agent=trace,warn`, ...), `warn` when unset; as text,
//! or one JSON object per line with `--log-format json` (for a log shipper).

use tracing_subscriber::EnvFilter;

/// The environment variable holding the log filter.
pub const FILTER_ENV: &str = "SHOAL_LOG";

/// Installs the process-wide subscriber, writing JSON lines when `json`. Call once, first
/// thing in `main`.
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_env(FILTER_ENV).unwrap_or_else(|_| EnvFilter::new("warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `try_init` only fails when a subscriber is already installed, which leaves logging working.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.with_ansi(ansi).try_init()
    };
}
