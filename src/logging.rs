//! Diagnostics to stderr through `tracing`: `-v` for more, `-q` for less, or `RUST_LOG`.

use tracing_subscriber::EnvFilter;

pub(crate) fn init(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // Keep russh's own chatter one level down unless asked for explicitly.
        EnvFilter::new(format!("{default},russh=warn"))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .try_init();
}
