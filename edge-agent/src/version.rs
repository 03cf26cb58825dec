//! The version this agent reports itself as: in its presence, its `ready` file, its events,
//! and what it compares a hub's agent target with.
//!
//! It is read at run time from [`MARK`], the bytes `\0shoal-agent-version=VERSION\0` in the
//! binary, not folded in at build time: the hub reads the same mark when a binary is released
//! (`shoal_model::release::marked_version`), so a release's version is the version its
//! binary says, and cannot be given wrongly by hand.

/// The mark (`shoal_model::release::VERSION_MARK`, the version, a NUL).
#[used]
static MARK: &str = concat!("\0shoal-agent-version=", env!("CARGO_PKG_VERSION"), "\0");

/// The version in [`MARK`] (the crate's version unless the binary's mark was changed).
pub fn version() -> &'static str {
    let mark: &'static str = std::hint::black_box(MARK);
    // Split the mark itself, so the binary holds its prefix only once, in the mark.
    mark.split_once('=')
        .and_then(|(_, rest)| rest.strip_suffix('\0'))
        .unwrap_or(env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_mark_says_the_crate_version_and_the_release_check_reads_it() {
        assert_eq!(super::version(), env!("CARGO_PKG_VERSION"));
        let me = std::env::current_exe()
            .and_then(std::fs::read)
            .expect("this test binary");
        let marked = shoal_model::release::marked_version(&me).expect("marked");
        assert_eq!(marked.to_string(), env!("CARGO_PKG_VERSION"));
    }
}
