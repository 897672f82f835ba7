//! The pipeline: the only code that orders stages. A run of one date (read, prepare, embed,
//! users, similar items, hybrid vectors, recommend, evaluate, audit, write, publish), and the
//! commands built from it: backfill (dates in order), backtest (runs in memory, nothing
//! published), re-evaluation of a published date, the HTML report, dry-run plans.
//!
//! A run is idempotent per date: a published date is skipped (exit 99) unless forced, and a
//! forced rerun replaces the partition (ARCHITECTURE.md "Publishing").

mod backfill;
mod backtest;
mod plan;
mod reevaluate;
mod report;
mod run;
mod runner;

pub use backfill::{BackfillRow, backfill, backfill_exit_code};
pub use backtest::{Backtest, BacktestRow, backtest};
pub use run::RunReport;
pub use runner::{RunOptions, Runner};
