//! The DataFusion session every stage shares: one `SessionContext` per run, with recjob's
//! functions ([`super::udf`]); stages register the stores of the URLs they read.

use datafusion::prelude::{SessionConfig, SessionContext};

/// A new session for one run.
pub fn context() -> SessionContext {
    let config = SessionConfig::new()
        .with_target_partitions(std::thread::available_parallelism().map_or(2, |n| n.get()))
        .with_information_schema(true);
    let ctx = SessionContext::new_with_config(config);
    for f in super::udf::all() {
        ctx.register_udf(f);
    }
    ctx
}
