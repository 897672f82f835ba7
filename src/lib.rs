//! recjob: a nightly batch recommendation job on DataFusion. See README.md and DESIGN.md.

pub mod audit;
pub mod backtest;
pub mod behavior;
pub mod blas;
pub mod cli;
pub mod cluster;
pub mod commit;
pub mod config;
pub mod embed;
pub mod engine;
pub mod error;
pub mod evaluate;
pub mod fallback;
pub mod files;
pub mod functions;
pub mod pipeline;
pub mod prepare;
pub mod read;
pub mod recommend;
pub mod report;
pub mod session;
pub mod sql;
pub mod standalone;
pub mod storage;
pub mod text;
pub mod topk;
pub mod users;
pub mod vectors;
pub mod write;

/// Code version recorded in manifests.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "+", env!("RECJOB_GIT_SHA"));
