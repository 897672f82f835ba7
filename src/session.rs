//! The DataFusion session every stage shares: one `SessionContext` per run with the stores
//! of the configured URLs registered and recjob's functions ([`crate::functions`]).

use datafusion::prelude::{SessionConfig, SessionContext};

pub fn context() -> SessionContext {
    let config = SessionConfig::new()
        .with_target_partitions(std::thread::available_parallelism().map_or(2, |n| n.get()))
        .with_information_schema(true);
    let ctx = SessionContext::new_with_config(config);
    for f in crate::functions::all() {
        ctx.register_udf(f);
    }
    ctx
}
