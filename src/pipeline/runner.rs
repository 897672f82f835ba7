//! The [`Runner`]: one configuration, the encoder and the engine it loads once, and the options
//! of a run.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::config::Config;
use crate::engine::Engine;
use crate::error::Result;
use crate::kernels::{Encoder, SentenceEncoder, blas_backend, warn_if_slow_blas};

/// How `run` treats a date.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Replace the date if it is published.
    pub force: bool,
    /// Say what would happen; read no data, write nothing.
    pub dry_run: bool,
}

/// Runs dates with one configuration; the encoder is loaded once, on first use.
pub struct Runner {
    /// The validated configuration.
    pub config: Config,
    encoder: OnceLock<Arc<dyn Encoder>>,
    engine: tokio::sync::OnceCell<Engine>,
}

/// Seconds per stage and the process's peak resident memory at its end, in the order the
/// stages ran.
pub(crate) struct Timings {
    /// (stage, seconds, peak resident bytes of the process up to the stage's end).
    pub(crate) stages: Vec<(&'static str, f64, Option<u64>)>,
    since: Instant,
}

impl Timings {
    pub(crate) fn start() -> Timings {
        Timings {
            stages: Vec::new(),
            since: Instant::now(),
        }
    }

    /// The stage that just ended (what it freed goes back to the system).
    pub(crate) fn lap(&mut self, stage: &'static str) {
        crate::memory::release_free();
        let now = Instant::now();
        let seconds = (now - self.since).as_secs_f64();
        self.stages
            .push((stage, seconds, crate::memory::peak_rss()));
        self.since = now;
    }
}

impl Runner {
    /// A runner of `config`.
    pub fn new(config: Config) -> Runner {
        Runner {
            config,
            encoder: OnceLock::new(),
            engine: tokio::sync::OnceCell::new(),
        }
    }

    /// Where the heavy stages run (`engine.url`); connected once, on first use.
    pub(crate) async fn engine(&self) -> Result<&Engine> {
        self.engine
            .get_or_try_init(|| Engine::connect(&self.config))
            .await
    }

    /// The encoder of `model.dir`; loaded once, on first use.
    pub(crate) fn encoder(&self) -> Result<Arc<dyn Encoder>> {
        if let Some(e) = self.encoder.get() {
            return Ok(e.clone());
        }
        let e: Arc<dyn Encoder> = Arc::new(SentenceEncoder::load_as(
            Path::new(&self.config.model.dir),
            self.config.model.device,
            self.config.model.prefix.as_deref(),
            self.config.model.dtype,
            false,
        )?);
        tracing::info!(
            model = e.model_id(),
            device = e.device(),
            blas = blas_backend(),
            pooling = e.pooling(),
            max_seq_length = e.max_seq_length(),
            "loaded encoder"
        );
        warn_if_slow_blas();
        Ok(self.encoder.get_or_init(|| e).clone())
    }
}
