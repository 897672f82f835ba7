//! The inputs of a run as the read stage found them, and the catalog snapshot in memory.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// One input file, as recorded in the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InputFile {
    /// `behavior` or `catalog`.
    pub table: String,
    /// The partition, `YYYY-MM-DD`.
    pub dt: String,
    /// Where it is.
    pub url: String,
    /// Its size.
    pub size_bytes: u64,
}

/// The checked inputs of a run.
#[derive(Debug)]
pub struct Inputs {
    /// Every file read, behavior then catalog.
    pub files: Vec<InputFile>,
    /// Rows of each behavior partition read, as its files' footers state them.
    pub behavior_rows: BTreeMap<NaiveDate, u64>,
    /// The catalog partition the run uses.
    pub catalog_dt: String,
    /// Text columns the template reads that exist in the catalog.
    pub text_columns: Vec<String>,
}

/// The catalog snapshot in memory: items sorted by id, with their rendered text.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Item ids, sorted, unique.
    pub ids: Vec<String>,
    /// Each item's text (`text.template`).
    pub texts: Vec<String>,
    /// Whether each item may be recommended.
    pub available: Vec<bool>,
    /// `catalog.category_column`, when the snapshot has it (else all `None`).
    pub categories: Vec<Option<String>>,
}
