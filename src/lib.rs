//! recjob: a nightly batch recommendation job on DataFusion.
//!
//! The crate is layered; each layer uses only the layers listed after it (ARCHITECTURE.md
//! "Layers"; `tests/it/architecture.rs` checks it):
//!
//! | layer | what it holds |
//! |---|---|
//! | [`commands`] | one file per subcommand; the only code that prints to stdout |
//! | [`pipeline`] | the only code that orders stages: run, backfill, backtest, re-evaluate, report |
//! | [`stages`] | read, prepare, embed, users, hybrid, recommend, evaluate, audit |
//! | [`engine`], [`publish`] | where heavy stages run (local, plans, Ballista); output tables, manifest, commit protocol |
//! | [`kernels`], [`io`] | encoder, top-K, ALS, popularity, BLAS; storage, Parquet, partitions, SQL helpers |
//! | [`config`], [`domain`] | validated configuration; dates, windows, records, vectors |
//! | [`error`], [`progress`] | error kinds and exit codes; progress bars |

pub mod commands;
pub mod config;
pub mod domain;
pub mod engine;
pub mod error;
pub mod io;
pub mod kernels;
pub mod memory;
pub mod pipeline;
pub mod progress;
pub mod publish;
pub mod stages;

/// Code version recorded in manifests.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "+", env!("RECJOB_GIT_SHA"));
