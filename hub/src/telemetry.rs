//! Logging for `shoal`: `tracing` events to stderr, filtered by `SHOAL_LOG` (`info` for the
//! daemons, `warn` for the CLI commands when unset). The embedded broker (rmqtt) logs through
//! the `log` crate; those records join the same output (targets `rmqtt`, `rmqtt_net`), so a
//! refused TLS handshake or a dropped connection shows up in the hub's log.

use tracing_subscriber::EnvFilter;

/// The environment variable holding the log filter.
pub const FILTER_ENV: &str = "SHOAL_LOG";

/// Installs the process-wide subscriber; `default` applies when `SHOAL_LOG` is unset.
pub fn init(default: &str) {
    let filter = EnvFilter::try_from_env(FILTER_ENV).unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // `try_init` only fails when a subscriber is already installed, which leaves logging working.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}
