//! Named crash points of the commit protocol, for tests: `RECJOB_HALT_AT=<step>` makes the
//! process abort at that step (no cleanup, no destructors: as a crash or a SIGKILL would), so a
//! test can prove the protocol survives a crash at every step (`tests/it/commit.rs`).

/// Abort the process here when `RECJOB_HALT_AT` names this step (crash tests).
pub(super) fn halt_point(step: &str) {
    if std::env::var("RECJOB_HALT_AT").is_ok_and(|s| s == step) {
        eprintln!("recjob: halting at {step} (RECJOB_HALT_AT)");
        std::process::abort();
    }
}
