//! Configuration: a TOML file, then `RECJOB_SECTION__KEY` environment variables, then
//! `--set section.key=value` overrides, deserialised strictly (unknown keys are errors) and
//! validated into a [`Config`] before any I/O. All problems are reported at once.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::{Template, parse_date};
use crate::error::{Error, Result};

/// The flags every command that reads a job configuration takes.
#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// Job configuration (TOML), e.g. jobs/nightly.toml.
    #[arg(long)]
    pub config: std::path::PathBuf,
    /// Override a configuration key: --set topk.k=20 (repeatable). Environment variables
    /// RECJOB_SECTION__KEY=value apply first.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

impl ConfigArgs {
    /// The validated configuration.
    pub fn load(&self) -> Result<Config> {
        Config::load(&self.config, &self.sets)
    }
}

/// A `YYYY-MM-DD` command-line date (clap value parser).
pub fn date_arg(s: &str) -> std::result::Result<NaiveDate, String> {
    parse_date(s).map_err(|e| e.to_string())
}

/// A job's validated configuration (`jobs/nightly.toml`; README "Configuration").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the inputs are.
    pub input: InputConfig,
    /// Where the outputs go.
    pub output: OutputConfig,
    /// The sentence encoder.
    #[serde(default)]
    pub model: ModelConfig,
    /// Item text.
    #[serde(default)]
    pub text: TextConfig,
    /// Catalog columns with a meaning.
    #[serde(default)]
    pub catalog: CatalogConfig,
    /// The training window.
    #[serde(default)]
    pub window: WindowConfig,
    /// Event types and their weights.
    #[serde(default)]
    pub events: EventsConfig,
    /// Top-K per user.
    #[serde(default)]
    pub topk: TopkConfig,
    /// Similar items per item.
    #[serde(default)]
    pub similar_items: SimilarItemsConfig,
    /// Which items a user is never recommended.
    #[serde(default)]
    pub exclusions: ExclusionsConfig,
    /// The hybrid model.
    #[serde(default)]
    pub hybrid: HybridConfig,
    /// The metrics.
    #[serde(default)]
    pub evaluate: EvaluateConfig,
    /// Where the heavy stages run.
    #[serde(default)]
    pub engine: EngineConfig,
    /// How runs publish.
    #[serde(default)]
    pub publish: PublishConfig,
}

/// `[publish]`: how runs of one date keep out of each other's way (ARCHITECTURE.md
/// "Publishing").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublishConfig {
    /// How long a date's lease holds without renewal, in seconds. A running process renews it
    /// every third of this; a crashed one's lease expires after it (at once when the crashed
    /// process ran on the same host).
    pub lease_seconds: u64,
}

impl Default for PublishConfig {
    fn default() -> Self {
        Self {
            lease_seconds: 3600,
        }
    }
}

/// `[input]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// URL of the Hive-partitioned behavior root (`.../behavior`, holding `dt=YYYY-MM-DD/`).
    pub behavior: String,
    /// URL of the Hive-partitioned catalog root; the run uses the newest `dt` <= the run date.
    pub catalog: String,
    /// Share of invalid window rows (null ids, unknown event types, unknown items) above which
    /// the run fails with exit 1.
    #[serde(default = "default_max_invalid_fraction")]
    pub max_invalid_fraction: f64,
    /// Behavior column names in the files.
    #[serde(default)]
    pub columns: ColumnsConfig,
}

fn default_max_invalid_fraction() -> f64 {
    0.01
}

/// Names of the behavior columns in the input files (the job's own names are the keys).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ColumnsConfig {
    /// The user id column.
    pub user_id: String,
    /// The item id column.
    pub item_id: String,
    /// The event type column.
    pub event_type: String,
    /// The event timestamp column.
    pub ts: String,
    /// The optional value column (rating, quantity).
    pub value: String,
}

impl Default for ColumnsConfig {
    fn default() -> Self {
        Self {
            user_id: "user_id".into(),
            item_id: "item_id".into(),
            event_type: "event_type".into(),
            ts: "ts".into(),
            value: "value".into(),
        }
    }
}

/// `[output]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// URL of the output root: tables live in `<root>/<table>/dt=D/`.
    pub root: String,
}

/// `[model]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Local sentence-transformers model directory.
    pub dir: String,
    /// Where the encoder runs.
    pub device: DeviceChoice,
    /// Tokens per encoder batch, padding included.
    pub max_batch_tokens: usize,
    /// Text prepended to every item text before tokenisation (`query: ` for E5 models);
    /// unset: the model folder's default (`recjob.json`'s `prefix`, none for MiniLM).
    pub prefix: Option<String>,
    /// Precision of the encoder on a GPU. Left out of the serialised config when f32, so the
    /// `config_hash` of configs that do not set it stays what it was before the key existed.
    #[serde(skip_serializing_if = "ModelDtype::is_f32")]
    pub dtype: ModelDtype,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            dir: "models/all-MiniLM-L6-v2".into(),
            device: DeviceChoice::Auto,
            max_batch_tokens: 8192,
            prefix: None,
            dtype: ModelDtype::F32,
        }
    }
}

/// Precision of the encoder's weights and activations on a GPU (`model.dtype`); the CPU
/// encoder always runs f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ModelDtype {
    /// Full precision.
    #[default]
    F32,
    /// bfloat16: f32's range, 8 bits of mantissa (cosine to f32 stated in README).
    Bf16,
    /// IEEE half: 11 bits of mantissa, values up to 65,504 (cosine to f32 stated in README).
    F16,
}

impl ModelDtype {
    /// The configuration value.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelDtype::F32 => "f32",
            ModelDtype::Bf16 => "bf16",
            ModelDtype::F16 => "f16",
        }
    }

    fn is_f32(&self) -> bool {
        *self == ModelDtype::F32
    }

    /// From the configuration value.
    pub fn parse(s: &str) -> Option<ModelDtype> {
        [ModelDtype::F32, ModelDtype::Bf16, ModelDtype::F16]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

/// Where the encoder runs (`model.device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum DeviceChoice {
    /// The first CUDA GPU when built with `cuda` and one is present, else the CPU.
    Auto,
    /// The CPU.
    Cpu,
    /// The first CUDA GPU; an error when there is none.
    Cuda,
}

impl DeviceChoice {
    /// The configuration value.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceChoice::Auto => "auto",
            DeviceChoice::Cpu => "cpu",
            DeviceChoice::Cuda => "cuda",
        }
    }

    fn is_auto(&self) -> bool {
        *self == DeviceChoice::Auto
    }

    /// From the configuration value.
    pub fn parse(s: &str) -> Option<DeviceChoice> {
        [DeviceChoice::Auto, DeviceChoice::Cpu, DeviceChoice::Cuda]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

/// Where the heavy stages run ([`crate::engine`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// `local` (this process) or `df://HOST:PORT`, a Ballista scheduler (`recjob scheduler`).
    pub url: String,
    /// Files, hence Ballista tasks, per distributed stage.
    pub partitions: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            url: "local".into(),
            partitions: 8,
        }
    }
}

/// `[text]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TextConfig {
    /// Item text template over catalog columns: `{column}` is replaced by the value, and a
    /// `[...]` section is dropped when a column inside it is null or blank.
    pub template: String,
}

impl Default for TextConfig {
    fn default() -> Self {
        Self {
            template: "{title}[. {category}][. {description}]".into(),
        }
    }
}

/// `[catalog]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// Boolean catalog column; items where it is false are never recommended. Optional in the
    /// data: when the column is absent, every item is available.
    pub available_column: String,
    /// String catalog column whose values are the per-category metric segments. Optional in
    /// the data: when the column is absent, there are no category segments.
    pub category_column: String,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            available_column: "available".into(),
            category_column: "category".into(),
        }
    }
}

/// `[window]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowConfig {
    /// Days of behavior used for a run of date D: [D - lookback_days + 1, D].
    pub lookback_days: u32,
    /// Half-life of the exponential time decay of an event's weight, in days.
    pub half_life_days: f64,
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            lookback_days: 60,
            half_life_days: 14.0,
        }
    }
}

/// `[events]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Weight of each event type in a user's vector. Event types not listed are invalid rows.
    pub weights: BTreeMap<String, f64>,
    /// Event types that count as ground truth in evaluation; empty means every type with a
    /// positive weight (a return is not a hit).
    pub truth_types: Vec<String>,
}

impl EventsConfig {
    /// The event types that count as ground truth: `truth_types`, or when it is empty every
    /// type with a positive weight.
    pub fn ground_truth_types(&self) -> Vec<&str> {
        if self.truth_types.is_empty() {
            self.weights
                .iter()
                .filter(|(_, w)| **w > 0.0)
                .map(|(t, _)| t.as_str())
                .collect()
        } else {
            self.truth_types.iter().map(String::as_str).collect()
        }
    }
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            weights: BTreeMap::from([
                ("purchase".to_string(), 1.0),
                ("view".to_string(), 0.25),
                ("return".to_string(), 0.0),
                ("rating".to_string(), 1.0),
            ]),
            truth_types: Vec::new(),
        }
    }
}

/// `[topk]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopkConfig {
    /// Recommendations per user.
    pub k: usize,
    /// Users per block of the blockwise kernel.
    pub block_users: usize,
    /// Items per block of the blockwise kernel.
    pub block_items: usize,
    /// Where top-K and similar items run: `auto` (a CUDA GPU when the binary has the `cuda`
    /// feature and one is present, else the CPU), `cpu` or `cuda`. The lists are the same on
    /// either, so it is not part of `config_hash` (nor serialised when `auto`).
    #[serde(skip_serializing_if = "DeviceChoice::is_auto")]
    pub device: DeviceChoice,
}

impl Default for TopkConfig {
    fn default() -> Self {
        Self {
            k: 50,
            block_users: 1024,
            block_items: 2048,
            device: DeviceChoice::Auto,
        }
    }
}

/// `[similar_items]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimilarItemsConfig {
    /// Similar items per catalog item.
    pub k: usize,
}

impl Default for SimilarItemsConfig {
    fn default() -> Self {
        Self { k: 20 }
    }
}

/// `exclusions.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExclusionPolicy {
    /// Exclude every item the user had any event with in the window.
    SeenInWindow,
    /// Exclude only items the user had an event with in the last `repeat_after_days` days.
    AllowRepeats,
}

/// `[exclusions]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExclusionsConfig {
    /// Which items are excluded.
    pub policy: ExclusionPolicy,
    /// With `allow_repeats`: days after an event before the item may be recommended again.
    pub repeat_after_days: u32,
}

impl Default for ExclusionsConfig {
    fn default() -> Self {
        Self {
            policy: ExclusionPolicy::AllowRepeats,
            repeat_after_days: 0,
        }
    }
}

/// How the behavior factors are learned from the window (`hybrid.model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BehaviorModel {
    /// Implicit-feedback ALS (`kernels::als`).
    Als,
    /// Low-rank EASE (`kernels::ease`).
    Ease,
}

/// The hybrid model (README "The model"; `stages::hybrid`): behavior factors learned from the
/// window (implicit ALS or low-rank EASE), blended with the text embeddings in the vectors top-K
/// scores.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HybridConfig {
    /// How the behavior factors are learned: `als` or `ease`.
    pub model: BehaviorModel,
    /// Dimensions f of the behavior factors; 0 = text embeddings only.
    pub factors: usize,
    /// ALS: confidence per unit of decayed event weight, c = 1 + alpha * w (EASE: unused).
    pub alpha: f64,
    /// L2 regularisation lambda: of the user and item factors (ALS), of the item-item matrix
    /// (EASE).
    pub regularization: f64,
    /// ALS sweeps (each solves every user, then every item); EASE subspace iterations.
    pub iterations: usize,
    /// Weight tau of the text cosine in the score tau * cos(text) + x_u . y_i + beta * pi_i.
    pub text_weight: f64,
    /// Weight beta of the popularity prior pi_i = ln(1 + events of i) / ln(1 + max events), in
    /// the window.
    pub popularity_weight: f64,
    /// Weight rho of the repeat term rho * ln(1 + d_ui), added to the score of every item the
    /// user had an event of a positive-weight type with on d_ui > 0 days of the window (README
    /// "The model").
    pub repeat_weight: f64,
    /// Weight gamma of the neighbour term gamma * D_u * n_ui / max_j n_uj, n_ui = sum over the
    /// user's items j of s_ji (item-kNN similarities of the window), D_u the user's largest model
    /// score among those candidates; 0 = off (README "The model").
    pub neighbor_weight: f64,
    /// Neighbours each item keeps for the neighbour term (the most similar items by s).
    pub neighbors: usize,
}

impl Default for HybridConfig {
    fn default() -> Self {
        Self {
            model: BehaviorModel::Als,
            factors: 128,
            alpha: 1.0,
            regularization: 0.1,
            iterations: 10,
            text_weight: 0.3,
            popularity_weight: 0.3,
            repeat_weight: 0.1,
            neighbor_weight: 0.0,
            neighbors: 50,
        }
    }
}

impl HybridConfig {
    /// Problems with the `[hybrid]` settings, appended to `errors`.
    fn validate(&self, errors: &mut Vec<String>) {
        let h = self;
        if !(h.text_weight.is_finite() && h.text_weight >= 0.0) {
            errors.push("hybrid.text_weight must be a finite number >= 0".to_string());
        }
        if !(h.popularity_weight.is_finite() && h.popularity_weight >= 0.0) {
            errors.push("hybrid.popularity_weight must be a finite number >= 0".to_string());
        }
        if !(h.repeat_weight.is_finite() && h.repeat_weight >= 0.0) {
            errors.push("hybrid.repeat_weight must be a finite number >= 0".to_string());
        }
        if !(h.neighbor_weight.is_finite() && h.neighbor_weight >= 0.0) {
            errors.push("hybrid.neighbor_weight must be a finite number >= 0".to_string());
        }
        if !(1..=MAX_NEIGHBORS).contains(&h.neighbors) {
            errors.push(format!(
                "hybrid.neighbors must be within 1..={MAX_NEIGHBORS}"
            ));
        }
        if h.factors > MAX_FACTORS {
            errors.push(format!("hybrid.factors must be within 0..={MAX_FACTORS}"));
        }
        if h.factors == 0 && h.text_weight <= 0.0 {
            errors.push(
                "hybrid.text_weight must be > 0 when hybrid.factors = 0 (nothing would rank)"
                    .to_string(),
            );
        }
        if h.factors > 0 && h.iterations == 0 {
            errors.push("hybrid.iterations must be at least 1 when hybrid.factors > 0".to_string());
        }
        if !(h.alpha.is_finite() && h.alpha >= 0.0) {
            errors.push("hybrid.alpha must be a finite number >= 0".to_string());
        }
        if !(h.regularization.is_finite() && h.regularization > 0.0) {
            errors.push("hybrid.regularization must be a finite number > 0".to_string());
        }
    }
}

/// `[evaluate]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvaluateConfig {
    /// Cut-offs K of the ranking metrics; values above `topk.k` are skipped.
    pub ks: Vec<usize>,
    /// Days at the end of a training window in which a user's (an item's) first event makes it
    /// new: the `new_users` segment and `new_item_share`.
    pub new_days: u32,
    /// Per-category segments for at most this many categories (those with the most available
    /// items); 0 = none.
    pub max_categories: usize,
}

impl Default for EvaluateConfig {
    fn default() -> Self {
        Self {
            ks: vec![10, 20, 50],
            new_days: 7,
            max_categories: 10,
        }
    }
}

/// The largest list length (`topk.k`, `similar_items.k`, `recjob topk --k`): lists are held per
/// user while they are ranked, so K is bounded.
pub const MAX_K: usize = 100_000;

/// The most behavior factors (`hybrid.factors`): ALS solves an f x f system per user and item and
/// holds f + 1 floats per user, so f is bounded well before memory or time run out.
pub const MAX_FACTORS: usize = 1024;

/// The most neighbours an item keeps (`hybrid.neighbors`): a user's neighbour term touches up to
/// this many items per item of the user's window.
pub const MAX_NEIGHBORS: usize = 1000;

/// A list length K on the command line (clap value parser): 1..=[`MAX_K`].
pub fn k_arg(s: &str) -> std::result::Result<usize, String> {
    s.parse::<usize>()
        .ok()
        .filter(|k| (1..=MAX_K).contains(k))
        .ok_or_else(|| format!("{s:?}: K must be an integer within 1..={MAX_K}"))
}

/// Prefix of environment variables that override configuration keys:
/// `RECJOB_TOPK__K=20` is `--set topk.k=20`.
pub const ENV_PREFIX: &str = "RECJOB_";

impl Config {
    /// Load a config file and apply environment then `--set` overrides.
    pub fn load(path: &Path, sets: &[String]) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!("cannot read config file {}: {e}", path.display()))
        })?;
        let env: Vec<(String, String)> = std::env::vars()
            .filter_map(|(k, v)| {
                let key = k.strip_prefix(ENV_PREFIX)?;
                key.contains("__")
                    .then(|| (key.to_ascii_lowercase().replace("__", "."), v))
            })
            .collect();
        Self::from_parts(&text, &path.display().to_string(), &env, sets)
    }

    /// A configuration from TOML text (`origin` names it in messages), environment overrides and `--set` overrides.
    pub fn from_parts(
        text: &str,
        origin: &str,
        env: &[(String, String)],
        sets: &[String],
    ) -> Result<Config> {
        let mut value: toml::Table = toml::from_str(text)
            .map_err(|e| Error::Config(format!("{origin} is not valid TOML: {e}")))?;
        let mut errors = Vec::new();
        for (key, raw) in env {
            if let Err(e) = set_key(&mut value, key, raw) {
                errors.push(format!(
                    "environment {ENV_PREFIX}{}: {e}",
                    key.replace('.', "__").to_uppercase()
                ));
            }
        }
        for set in sets {
            match set.split_once('=') {
                Some((key, raw)) => {
                    if let Err(e) = set_key(&mut value, key.trim(), raw) {
                        errors.push(format!("--set {set}: {e}"));
                    }
                }
                None => errors.push(format!("--set {set}: expected KEY=VALUE")),
            }
        }
        if !errors.is_empty() {
            return Err(Error::Config(errors.join("; ")));
        }
        // The path names the key a bad value came from, and the message where it was set: the
        // last `--set` of it, else the environment, else the file.
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(value)).map_err(|e| {
                let key = e.path().to_string();
                let set = sets
                    .iter()
                    .rev()
                    .find(|s| s.split_once('=').is_some_and(|(k, _)| k.trim() == key));
                let source = match (set, env.iter().any(|(k, _)| *k == key)) {
                    (Some(set), _) => format!("--set {set}"),
                    (None, true) => format!(
                        "environment {ENV_PREFIX}{}",
                        key.replace('.', "__").to_uppercase()
                    ),
                    (None, false) => origin.to_string(),
                };
                let key = if key == "." {
                    String::new()
                } else {
                    format!("{key}: ")
                };
                Error::Config(format!("{source}: {key}{}", e.inner().message()))
            })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        let mut errors = Vec::new();
        if !(0.0..=1.0).contains(&self.input.max_invalid_fraction) {
            errors.push("input.max_invalid_fraction must be within [0, 1]".to_string());
        }
        let c = &self.input.columns;
        let names = [&c.user_id, &c.item_id, &c.event_type, &c.ts, &c.value];
        if (1..names.len()).any(|i| names[..i].contains(&names[i])) {
            errors.push(format!(
                "input.columns must name five different columns, found user_id {:?}, item_id {:?}, event_type {:?}, ts {:?}, value {:?}",
                c.user_id, c.item_id, c.event_type, c.ts, c.value
            ));
        }
        if self.window.lookback_days == 0 {
            errors.push("window.lookback_days must be at least 1".to_string());
        }
        if !(self.window.half_life_days > 0.0 && self.window.half_life_days.is_finite()) {
            errors.push("window.half_life_days must be a positive number of days".to_string());
        }
        if !(1..=MAX_K).contains(&self.topk.k) {
            errors.push(format!("topk.k must be within 1..={MAX_K}"));
        }
        if self.topk.block_users == 0 || self.topk.block_items == 0 {
            errors.push("topk.block_users and topk.block_items must be at least 1".to_string());
        }
        if !(1..=MAX_K).contains(&self.similar_items.k) {
            errors.push(format!("similar_items.k must be within 1..={MAX_K}"));
        }
        if self.model.max_batch_tokens < 16 {
            errors.push("model.max_batch_tokens must be at least 16".to_string());
        }
        if self.events.weights.is_empty() {
            errors.push("events.weights must list at least one event type".to_string());
        }
        for (event, weight) in &self.events.weights {
            if !weight.is_finite() || *weight < 0.0 {
                errors.push(format!(
                    "events.weights.{event} must be a finite number >= 0"
                ));
            }
        }
        for t in &self.events.truth_types {
            if !self.events.weights.contains_key(t) {
                errors.push(format!(
                    "events.truth_types: {t:?} is not an event type in events.weights"
                ));
            }
        }
        self.hybrid.validate(&mut errors);
        if self.evaluate.new_days == 0 || self.evaluate.new_days > self.window.lookback_days {
            errors.push("evaluate.new_days must be within [1, window.lookback_days]".to_string());
        }
        if self.evaluate.ks.contains(&0) {
            errors.push("evaluate.ks values must be at least 1".to_string());
        }
        if self.engine.url != "local" {
            match url::Url::parse(&self.engine.url) {
                Ok(u) if u.scheme() == "df" && u.host_str().is_some() && u.port().is_some() => {
                    if self.output.root.starts_with("memory:") {
                        errors.push(
                            "engine.url: a cluster cannot reach a memory:// output.root; use file:// on shared storage or s3://".to_string(),
                        );
                    }
                }
                _ => errors.push(format!(
                    "engine.url must be \"local\" or df://HOST:PORT (a recjob scheduler), found {:?}",
                    self.engine.url
                )),
            }
        }
        if self.publish.lease_seconds < 3 {
            errors.push("publish.lease_seconds must be at least 3".to_string());
        }
        if self.engine.partitions == 0 {
            errors.push("engine.partitions must be at least 1".to_string());
        }
        if let Err(e) = Template::parse(&self.text.template) {
            errors.push(format!("text.template: {e}"));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Config(errors.join("; ")))
        }
    }

    /// Cut-offs of the metrics that the published lists can serve (K <= topk.k), ascending.
    pub fn metric_ks(&self) -> Vec<usize> {
        let mut ks: Vec<usize> = self
            .evaluate
            .ks
            .iter()
            .copied()
            .filter(|k| *k <= self.topk.k)
            .collect();
        ks.sort_unstable();
        ks.dedup();
        ks
    }

    /// Hash of the effective configuration (after overrides), recorded in manifests. Where the
    /// stages ran (`engine`) and how the run published (`publish`) are left out: they do not
    /// change what a run publishes.
    pub fn hash(&self) -> String {
        let mut config = self.clone();
        config.engine = EngineConfig::default();
        config.publish = PublishConfig::default();
        config.topk.device = DeviceChoice::Auto;
        let json = serde_json::to_vec(&config).expect("config serialises to JSON: this is a bug");
        hex::encode(Sha256::digest(json))
    }
}

/// Set `a.b.c = raw` in the table. The key must name an existing field or a map entry; unknown
/// keys are rejected when the table is deserialised.
fn set_key(table: &mut toml::Table, key: &str, raw: &str) -> std::result::Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("invalid key {key:?}"));
    }
    let digits = raw.trim().trim_start_matches('-');
    if !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && raw.trim().parse::<i64>().is_err()
    {
        return Err(format!("{} is out of range", raw.trim()));
    }
    let value = parse_value(raw);
    let mut node = table;
    for part in &parts[..parts.len() - 1] {
        let entry = node
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = entry
            .as_table_mut()
            .ok_or_else(|| format!("{part} is not a section"))?;
    }
    node.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

/// A TOML literal (number, bool, array...) when it parses as one, else a plain string.
fn parse_value(raw: &str) -> toml::Value {
    let raw = raw.trim();
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[input]\nbehavior = \"b\"\ncatalog = \"c\"\n[output]\nroot = \"o\"\n";

    /// `--set set` over [`MINIMAL`] is a configuration error (exit 1) whose message has `name`.
    fn rejected_naming(set: &str, name: &str) {
        let e = Config::from_parts(MINIMAL, "t", &[], &[set.into()]).unwrap_err();
        assert!(e.to_string().contains(name), "{set}: {e}");
        assert_eq!(e.exit_code() as u8, 1, "{set}");
    }

    #[test]
    fn overrides_apply_in_order_env_then_set() {
        let env = vec![("topk.k".to_string(), "7".to_string())];
        let c = Config::from_parts(MINIMAL, "t", &env, &[]).unwrap();
        assert_eq!(c.topk.k, 7);
        let c = Config::from_parts(MINIMAL, "t", &env, &["topk.k=9".into()]).unwrap();
        assert_eq!(c.topk.k, 9);
        let c =
            Config::from_parts(MINIMAL, "t", &[], &["events.weights.click=0.5".into()]).unwrap();
        assert_eq!(c.events.weights["click"], 0.5);
        let c = Config::from_parts(
            MINIMAL,
            "t",
            &[],
            &["exclusions.policy=allow_repeats".into()],
        )
        .unwrap();
        assert_eq!(c.exclusions.policy, ExclusionPolicy::AllowRepeats);
    }

    #[test]
    fn engine_urls_are_checked_and_left_out_of_the_hash() {
        let local = Config::from_parts(MINIMAL, "t", &[], &[]).unwrap();
        assert_eq!(local.engine.url, "local");
        let cluster =
            Config::from_parts(MINIMAL, "t", &[], &["engine.url=df://sched:50050".into()]).unwrap();
        assert_eq!(
            cluster.hash(),
            local.hash(),
            "where stages run is not part of the hash"
        );
        let k = Config::from_parts(MINIMAL, "t", &[], &["topk.k=7".into()]).unwrap();
        assert_ne!(k.hash(), local.hash());
        for bad in [
            "engine.url=http://sched:50050",
            "engine.url=df://sched",
            "engine.partitions=0",
        ] {
            let e = Config::from_parts(MINIMAL, "t", &[], &[bad.into()]).unwrap_err();
            assert!(e.to_string().contains("engine."), "{bad}: {e}");
        }
        let mem = "[input]\nbehavior = \"b\"\ncatalog = \"c\"\n[output]\nroot = \"memory://o\"\n";
        let e =
            Config::from_parts(mem, "t", &[], &["engine.url=df://sched:50050".into()]).unwrap_err();
        assert!(e.to_string().contains("memory://"), "{e}");
    }

    #[test]
    fn hybrid_and_exclusion_defaults_and_their_checks() {
        let c = Config::from_parts(MINIMAL, "t", &[], &[]).unwrap();
        assert_eq!(c.exclusions.policy, ExclusionPolicy::AllowRepeats);
        assert_eq!(c.exclusions.repeat_after_days, 0);
        assert_eq!(
            (c.hybrid.factors, c.hybrid.iterations),
            (HybridConfig::default().factors, 10)
        );
        let c = Config::from_parts(
            MINIMAL,
            "t",
            &[],
            &["hybrid.factors=0".into(), "hybrid.text_weight=1.0".into()],
        )
        .unwrap();
        assert_eq!(c.hybrid.factors, 0);
        assert_eq!(c.hybrid.model, BehaviorModel::Als);
        let c = Config::from_parts(MINIMAL, "t", &[], &["hybrid.model=ease".into()]).unwrap();
        assert_eq!(c.hybrid.model, BehaviorModel::Ease);
        let e = Config::from_parts(MINIMAL, "t", &[], &["hybrid.model=svd".into()]).unwrap_err();
        assert!(
            e.to_string().contains("hybrid.model") || e.to_string().contains("svd"),
            "{e}"
        );
        for (set, name) in [
            ("hybrid.text_weight=-1", "hybrid.text_weight"),
            ("hybrid.regularization=0", "hybrid.regularization"),
            ("hybrid.alpha=-2", "hybrid.alpha"),
            ("hybrid.iterations=0", "hybrid.iterations"),
            ("hybrid.popularity_weight=-0.5", "hybrid.popularity_weight"),
            ("hybrid.repeat_weight=-1", "hybrid.repeat_weight"),
            (
                "hybrid.factors=1025",
                "hybrid.factors must be within 0..=1024",
            ),
            (
                "input.columns.user_id=item_id",
                "input.columns must name five different columns",
            ),
        ] {
            rejected_naming(set, name);
        }
        let e = Config::from_parts(
            MINIMAL,
            "t",
            &[],
            &["hybrid.factors=0".into(), "hybrid.text_weight=0".into()],
        )
        .unwrap_err();
        assert!(e.to_string().contains("nothing would rank"), "{e}");
    }

    #[test]
    fn values_of_the_wrong_type_are_rejected_by_key() {
        for (set, key) in [
            ("topk.k=-1", "topk.k: "),
            ("hybrid.factors=-1", "hybrid.factors: "),
            ("window.half_life_days=soon", "window.half_life_days: "),
            ("exclusions.policy=3", "exclusions.policy: "),
        ] {
            rejected_naming(set, key);
        }
        let env = vec![("evaluate.ks".to_string(), "[10, x]".to_string())];
        let e = Config::from_parts(MINIMAL, "t", &env, &[]).unwrap_err();
        assert!(e.to_string().contains("evaluate.ks"), "{e}");
        // The message says where the bad value was set.
        let env = vec![("topk.k".to_string(), "abc".to_string())];
        let e = Config::from_parts(MINIMAL, "t", &env, &[]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("configuration error: environment RECJOB_TOPK__K: topk.k: "),
            "{e}"
        );
        let e = Config::from_parts(MINIMAL, "t", &env, &["topk.k=x".into()]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("configuration error: --set topk.k=x: topk.k: "),
            "{e}"
        );
        let e = Config::from_parts(
            &format!("{MINIMAL}\n[similar_items]\nk = \"x\"\n"),
            "t",
            &[],
            &[],
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("configuration error: t: similar_items.k: "),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected_by_name() {
        let e = Config::from_parts(MINIMAL, "t", &[], &["topk.kk=3".into()]).unwrap_err();
        assert!(e.to_string().contains("kk"), "{e}");
        let e = Config::from_parts(MINIMAL, "t", &[], &["nosuch.key=3".into()]).unwrap_err();
        assert!(e.to_string().contains("nosuch"), "{e}");
        let e = Config::from_parts(MINIMAL, "t", &[], &["exclusions.policy=sometimes".into()])
            .unwrap_err();
        assert!(e.to_string().contains("sometimes"), "{e}");
        let e = Config::from_parts(
            MINIMAL,
            "t",
            &[],
            &["topk.k=0".into(), "window.lookback_days=0".into()],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("topk.k") && e.contains("window.lookback_days"),
            "{e}"
        );
        assert!(matches!(
            Config::from_parts(MINIMAL, "t", &[], &["noequals".into()]),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn metric_ks_are_capped_by_k() {
        let c = Config::from_parts(
            MINIMAL,
            "t",
            &[],
            &["topk.k=20".into(), "evaluate.ks=[50, 10, 20, 10]".into()],
        )
        .unwrap();
        assert_eq!(c.metric_ks(), vec![10, 20]);
    }
}
