//! Dry runs: what a run of a date would do and what it would read, from listings only.

use chrono::{NaiveDate, TimeDelta};

use super::runner::Runner;
use crate::domain::{Window, dt};
use crate::error::{ExitCode, Result};
use crate::io::{Location, partitions};
use crate::publish::is_published;
use crate::stages::read::behavior_ready;

impl Runner {
    /// What a run of `date` would do now and which partitions it would read, from listings
    /// only (no data is read): `(action, inputs, the exit code the run would end with unless
    /// it fails)`.
    pub async fn plan(&self, date: NaiveDate, force: bool) -> Result<(String, String, ExitCode)> {
        let root = Location::parse(&self.config.output.root)?;
        let (action, code) = if is_published(&root, date).await? {
            if force {
                ("replace (--force)", ExitCode::Published)
            } else {
                ("skip (published)", ExitCode::NothingToDo)
            }
        } else if !behavior_ready(&self.config, date).await? {
            ("not ready (no behavior partition)", ExitCode::NotReady)
        } else {
            ("run", ExitCode::Published)
        };
        // The run reads D-1's window too, for the baseline of its evaluation.
        let first =
            Window::ending(date - TimeDelta::days(1), self.config.window.lookback_days).first;
        let behavior = partitions(&Location::parse(&self.config.input.behavior)?).await?;
        let n_behavior = behavior
            .iter()
            .filter(|d| **d >= first && **d <= date)
            .count();
        let catalog = partitions(&Location::parse(&self.config.input.catalog)?).await?;
        let catalog = catalog
            .iter()
            .rev()
            .find(|d| **d <= date)
            .map_or("none".to_string(), |d| dt(*d));
        let inputs = format!(
            "behavior dt={}..{}: {n_behavior} partitions (the window and, one day earlier, \
             D-1's for the evaluation's baseline); catalog dt={catalog}",
            dt(first),
            dt(date)
        );
        Ok((action.to_string(), inputs, code))
    }
}
