//! Apache Ballista processes with recjob's functions: `recjob scheduler`, `recjob executor`, and
//! the client a run uses for `engine.url = "df://HOST:PORT"` ([`crate::engine`]).
//!
//! Scheduling, shuffles, task retries and executor loss are Ballista's. What recjob adds is the
//! same on all three: its scalar functions ([`crate::functions::all`]) and an object-store
//! registry that resolves `file://` and `s3://` URLs from the process's own environment
//! ([`Stores`]), so each process needs only its own `AWS_*` variables to read and write the
//! run's storage.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::registry::FunctionRegistry;
use datafusion::prelude::{SessionConfig, SessionContext};
use object_store::ObjectStore;
use url::Url;

use crate::error::{Context, Error, Result};
use crate::storage::Location;

/// Object stores by `scheme://authority`, built on first use with [`Location::parse`].
#[derive(Debug, Default)]
pub struct Stores {
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

fn store_key(url: &Url) -> String {
    format!(
        "{}://{}",
        url.scheme(),
        &url[url::Position::BeforeHost..url::Position::AfterPort]
    )
}

impl ObjectStoreRegistry for Stores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.stores
            .lock()
            .expect("lock")
            .insert(store_key(url), store)
    }

    fn deregister_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        self.stores
            .lock()
            .expect("lock")
            .remove(&store_key(url))
            .ok_or_else(|| {
                datafusion::error::DataFusionError::Internal(format!("no store for {url}"))
            })
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        let key = store_key(url);
        let mut stores = self.stores.lock().expect("lock");
        if let Some(s) = stores.get(&key) {
            return Ok(s.clone());
        }
        let location = Location::parse(&format!("{key}/"))
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        stores.insert(key, location.store.clone());
        Ok(location.store)
    }
}

/// A runtime whose object stores come from [`Stores`]; spill files go to `temp` when given.
pub fn runtime(temp: Option<&str>) -> datafusion::error::Result<Arc<RuntimeEnv>> {
    let builder = RuntimeEnvBuilder::new().with_object_store_registry(Arc::new(Stores::default()));
    match temp {
        Some(dir) => builder.with_temp_file_path(dir).build_arc(),
        None => builder.build_arc(),
    }
}

/// A session on the Ballista cluster at `url` (`df://HOST:PORT`) with recjob's functions.
/// Each staged file is one task (`partitions` of them per stage): scans are not split or
/// repartitioned, so a stage's plan has no shuffle.
pub async fn client(url: &str, partitions: usize) -> Result<SessionContext> {
    let mut config = SessionConfig::new_with_ballista()
        .with_target_partitions(partitions)
        .with_round_robin_repartition(false)
        .with_repartition_file_scans(false);
    config.options_mut().execution.collect_statistics = false;
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_runtime_env(runtime(None).context("engine runtime")?)
        .build();
    let ctx = SessionContext::remote_with_state(url, state)
        .await
        .context(format!("engine {url}"))?;
    // After the upgrade: Ballista sets the session's functions itself.
    for f in crate::functions::all() {
        ctx.register_udf(f);
    }
    Ok(ctx)
}

fn address(host: &str, port: u16) -> Result<SocketAddr> {
    format!("{host}:{port}")
        .parse()
        .map_err(|e| Error::Config(format!("invalid address {host}:{port}: {e}")))
}

/// `recjob scheduler`: a Ballista scheduler whose sessions know recjob's functions and stores.
/// Returns when the server stops.
pub async fn scheduler(
    bind: &str,
    port: u16,
    external_host: &str,
    executor_timeout_seconds: u64,
) -> Result<()> {
    let addr = address(bind, port)?;
    let config = SchedulerConfig {
        bind_host: bind.to_string(),
        bind_port: port,
        external_host: external_host.to_string(),
        executor_timeout_seconds,
        expire_dead_executor_interval_seconds: (executor_timeout_seconds / 4).clamp(1, 15),
        no_executors_grace_period_seconds: executor_timeout_seconds,
        override_session_builder: Some(Arc::new(|config: SessionConfig| {
            let state = ballista_core::utils::default_session_builder(config)?;
            let mut state = SessionStateBuilder::new_from_existing(state)
                .with_runtime_env(runtime(None)?)
                .build();
            for f in crate::functions::all() {
                state.register_udf(Arc::new(f))?;
            }
            Ok(state)
        })),
        ..Default::default()
    };
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .context("cannot start the Ballista scheduler")?;
    tracing::info!(%addr, "recjob scheduler listening");
    ballista_scheduler::scheduler_process::start_server(cluster, addr, Arc::new(config))
        .await
        .context(format!("Ballista scheduler on {addr}"))
}

/// What `recjob executor` starts.
pub struct ExecutorOptions {
    pub scheduler_host: String,
    pub scheduler_port: u16,
    pub bind: String,
    pub external_host: Option<String>,
    /// Arrow Flight port (shuffle and result data); gRPC is `grpc_port`.
    pub port: u16,
    pub grpc_port: u16,
    /// Tasks at once. recjob's kernels use every core of the machine themselves, so 1 is right
    /// unless tasks are small.
    pub vcores: usize,
    pub work_dir: Option<String>,
    pub heartbeat_seconds: u64,
}

/// `recjob executor`: a Ballista executor registered with the scheduler, running recjob's
/// functions. Returns on SIGINT/SIGTERM (Ballista's handlers) or when it cannot reach the
/// scheduler.
pub async fn executor(opts: ExecutorOptions) -> Result<()> {
    address(&opts.bind, opts.port)?;
    let registry = BallistaFunctionRegistry::from(&crate::session::context().state());
    let work_dir = opts.work_dir.clone();
    let config = ExecutorProcessConfig {
        bind_host: opts.bind.clone(),
        external_host: opts.external_host.clone(),
        port: opts.port,
        grpc_port: opts.grpc_port,
        scheduler_host: opts.scheduler_host.clone(),
        scheduler_port: opts.scheduler_port,
        scheduler_connect_timeout_seconds: 30,
        vcores: opts.vcores,
        work_dir: opts.work_dir.clone(),
        executor_heartbeat_interval_seconds: opts.heartbeat_seconds,
        override_function_registry: Some(Arc::new(registry)),
        override_runtime_producer: Some(Arc::new(move |_config: &SessionConfig| {
            runtime(work_dir.as_deref())
        })),
        ..Default::default()
    };
    tracing::info!(
        scheduler = %format!("{}:{}", opts.scheduler_host, opts.scheduler_port),
        flight = opts.port,
        grpc = opts.grpc_port,
        vcores = opts.vcores,
        "recjob executor starting"
    );
    start_executor_process(Arc::new(config))
        .await
        .context("Ballista executor")
}
