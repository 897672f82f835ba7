//! Apache Ballista processes with recjob's functions: `recjob scheduler`, `recjob executor`, and
//! the client a run uses for `engine.url = "df://HOST:PORT"` ([`super::Engine`]).
//!
//! Scheduling, shuffles, task retries and executor loss are Ballista's. What recjob adds is the
//! same on all three: its scalar functions ([`super::udf::all`]) and an object-store
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
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::logical_expr::registry::FunctionRegistry;
use datafusion::prelude::{SessionConfig, SessionContext};
use object_store::ObjectStore;
use url::Url;

use super::udf;
use crate::error::{Context, Error, Result};
use crate::io::Location;

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
    let builder =
        crate::io::runtime_builder().with_object_store_registry(Arc::new(Stores::default()));
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
    for f in udf::all() {
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
pub async fn scheduler(opts: SchedulerOptions) -> Result<()> {
    let addr = address(&opts.bind, opts.port)?;
    let executor_timeout_seconds = opts.executor_timeout_seconds;
    let config = SchedulerConfig {
        bind_host: opts.bind.clone(),
        bind_port: opts.port,
        external_host: opts.external_host.clone(),
        executor_timeout_seconds,
        expire_dead_executor_interval_seconds: (executor_timeout_seconds / 4).clamp(1, 15),
        no_executors_grace_period_seconds: executor_timeout_seconds,
        override_session_builder: Some(Arc::new(|config: SessionConfig| {
            let state = ballista_core::utils::default_session_builder(config)?;
            let mut state = SessionStateBuilder::new_from_existing(state)
                .with_runtime_env(runtime(None)?)
                .build();
            for f in udf::all() {
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

/// A scheduler's `HOST:PORT`.
#[derive(Debug, Clone)]
pub struct HostPort {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl std::str::FromStr for HostPort {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<HostPort, String> {
        s.rsplit_once(':')
            .and_then(|(h, p)| {
                Some(HostPort {
                    host: h.to_string(),
                    port: p.parse::<u16>().ok()?,
                })
            })
            .filter(|hp| !hp.host.is_empty())
            .ok_or_else(|| format!("{s}: expected HOST:PORT"))
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// What `recjob scheduler` starts.
#[derive(Debug, Clone, clap::Args)]
pub struct SchedulerOptions {
    /// Address to listen on. Loopback by default: the port has no authentication (README
    /// "Scaling out on Apache Ballista", network); bind a private interface on purpose.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// gRPC port (clients and executors connect here).
    #[arg(long, default_value_t = 50050)]
    pub port: u16,
    /// Host name under which executors and clients reach this scheduler.
    #[arg(long, default_value = "localhost")]
    pub external_host: String,
    /// Seconds without a heartbeat after which an executor is dead and its tasks run again
    /// elsewhere.
    #[arg(long, default_value_t = 30)]
    pub executor_timeout_seconds: u64,
}

/// What `recjob executor` starts.
#[derive(Debug, Clone, clap::Args)]
pub struct ExecutorOptions {
    /// The scheduler, HOST:PORT.
    #[arg(long)]
    pub scheduler: HostPort,
    /// Address to listen on. Loopback by default: the ports have no authentication (README
    /// "Scaling out on Apache Ballista", network); bind a private interface on purpose.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// Host name under which the scheduler and other executors reach this one (default:
    /// what the scheduler sees).
    #[arg(long)]
    pub external_host: Option<String>,
    /// Arrow Flight port (task results and shuffle data).
    #[arg(long, default_value_t = 50051)]
    pub port: u16,
    /// gRPC port (the scheduler's task launches).
    #[arg(long, default_value_t = 50052)]
    pub grpc_port: u16,
    /// Tasks at once; recjob's functions use every core of the machine themselves, so 1 is
    /// right unless tasks are small.
    #[arg(long, default_value_t = 1)]
    pub vcores: usize,
    /// Directory for shuffle and spill files (default: a temporary directory).
    #[arg(long)]
    pub work_dir: Option<String>,
    /// Seconds between heartbeats to the scheduler (below its --executor-timeout-seconds).
    #[arg(long, default_value_t = 5)]
    pub heartbeat_seconds: u64,
}

/// `recjob executor`: a Ballista executor registered with the scheduler, running recjob's
/// functions. Returns on SIGINT/SIGTERM (Ballista's handlers) or when it cannot reach the
/// scheduler.
pub async fn executor(opts: ExecutorOptions) -> Result<()> {
    address(&opts.bind, opts.port)?;
    let registry = BallistaFunctionRegistry::from(&super::session::context().state());
    let work_dir = opts.work_dir.clone();
    let config = ExecutorProcessConfig {
        bind_host: opts.bind.clone(),
        external_host: opts.external_host.clone(),
        port: opts.port,
        grpc_port: opts.grpc_port,
        scheduler_host: opts.scheduler.host.clone(),
        scheduler_port: opts.scheduler.port,
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
        scheduler = %opts.scheduler,
        flight = opts.port,
        grpc = opts.grpc_port,
        vcores = opts.vcores,
        "recjob executor starting"
    );
    start_executor_process(Arc::new(config))
        .await
        .context("Ballista executor")
}
