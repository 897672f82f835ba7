//! `recjob scheduler` and `recjob executor`: the Apache Ballista processes of a cluster, with
//! recjob's functions ([`crate::engine`]).

use crate::engine::{
    ExecutorOptions, SchedulerOptions, executor as run_executor, scheduler as run_scheduler,
};
use crate::error::{ExitCode, Result};

pub(super) async fn scheduler(opts: SchedulerOptions) -> Result<ExitCode> {
    run_scheduler(opts).await?;
    Ok(ExitCode::Published)
}

pub(super) async fn executor(opts: ExecutorOptions) -> Result<ExitCode> {
    run_executor(opts).await?;
    Ok(ExitCode::Published)
}
