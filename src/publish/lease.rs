//! Per-date leases: at most one process writes a date's partitions at a time (a run, a
//! `--force` rerun, a backfill's run of that date, `recjob evaluate`).
//!
//! A lease is an object `_leases/dt=D/<generation>.json` created with a conditional put
//! (`PutMode::Create`), so of two processes that try the same generation exactly one wins. The
//! holder is the highest generation; it is live until `expires_at` (renewed while the holder
//! runs), or until its process is seen dead on the same host. A new holder takes the next
//! generation, so a process whose lease was taken over finds a higher generation when it checks
//! ([`Lease::verify`]) before the steps that change what readers see, and stops.

use std::time::Duration;

use chrono::{NaiveDate, Utc};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use super::halt::halt_point;
use crate::domain::dt;
use crate::error::{Context, Error, Result};
use crate::io::Location;

/// The folder of leases under the output root.
pub const LEASES: &str = "_leases";

/// Who holds a date, and until when.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Holder {
    run_id: String,
    /// `run` or `evaluate`.
    action: String,
    host: String,
    pid: u32,
    /// The holder process's start time (clock ticks after boot, `/proc/<pid>/stat`), so a pid
    /// reused by another process is not taken for the holder. Absent in leases written before
    /// it was recorded, and off Linux.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    start_ticks: Option<u64>,
    acquired_at: String,
    /// Seconds since the epoch.
    expires_at: i64,
}

impl Holder {
    /// Live: not expired, and not a process known to be dead. On the same Linux host the
    /// holder is dead when its pid is gone, is a zombie (killed, not yet reaped by its parent),
    /// or now belongs to a process started at another time.
    fn is_live(&self, now: i64) -> bool {
        if self.expires_at <= now {
            return false;
        }
        if self.host == host() && cfg!(target_os = "linux") {
            return match process_start(self.pid) {
                Some(start) => self.start_ticks.is_none_or(|s| s == start),
                None => false,
            };
        }
        true
    }
}

/// The start time of a running process (field 22 of `/proc/<pid>/stat`); `None` when there is
/// no such process, or it has exited and only its zombie or dead entry remains.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so fields are counted
    // after the last ')'.
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_ascii_whitespace();
    let state = fields.next()?;
    if matches!(state, "Z" | "X" | "x") {
        return None;
    }
    // After the state (field 3), start time is field 22: 18 more fields on.
    fields.nth(18)?.parse().ok()
}

/// This machine's name, as leases record it.
fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

/// A held lease on one date. Renewed in the background until released; [`Lease::release`]
/// must be called when the work is done (a crashed holder's lease expires or is seen dead).
pub struct Lease {
    root: Location,
    date: NaiveDate,
    generation: u64,
    path: Path,
    holder: Holder,
    renewal: tokio::task::JoinHandle<()>,
}

fn folder(root: &Location, date: NaiveDate) -> Location {
    root.child(&format!("{LEASES}/dt={}", dt(date)))
}

/// Generations present for `date`, highest last.
async fn generations(root: &Location, date: NaiveDate) -> Result<Vec<(u64, Path)>> {
    let mut out: Vec<(u64, Path)> = folder(root, date)
        .list_files()
        .await?
        .into_iter()
        .filter_map(|m| {
            let g = m.location.filename()?.strip_suffix(".json")?.parse().ok()?;
            Some((g, m.location))
        })
        .collect();
    out.sort();
    Ok(out)
}

async fn read_holder(root: &Location, path: &Path) -> Result<Option<Holder>> {
    match root.store.get(path).await {
        Ok(r) => {
            let bytes = r
                .bytes()
                .await
                .context(format!("reading {}", root.object_url(path)))?;
            // Content that is not a lease (a crash while writing cannot leave one: puts are
            // atomic, so something else wrote it) holds nothing, and the run says so.
            let holder = serde_json::from_slice(&bytes).ok();
            if holder.is_none() {
                tracing::warn!(lease = %root.object_url(path), bytes = bytes.len(), "not a lease recjob wrote: it holds nothing");
            }
            Ok(holder)
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        // Unreadable: whoever holds it may be alive, so the date stays taken; the operator who
        // knows no process writes the date deletes the object.
        Err(e) => Err(Error::infra(
            format!(
                "reading the lease {} (if no process is writing this date, delete it to free the date)",
                root.object_url(path)
            ),
            e,
        )),
    }
}

impl Lease {
    /// Take the lease of `date` for `run_id` (`action`: what it will do), valid for
    /// `ttl_seconds` and renewed every third of it. [`Error::Busy`] when a live process holds
    /// it.
    pub async fn acquire(
        root: &Location,
        date: NaiveDate,
        run_id: &str,
        action: &str,
        ttl_seconds: u64,
    ) -> Result<Lease> {
        let gens = generations(root, date).await?;
        let now = Utc::now().timestamp();
        let next = match gens.last() {
            Some((g, path)) => {
                if let Some(h) = read_holder(root, path).await?
                    && h.is_live(now)
                {
                    return Err(busy(date, &h));
                }
                g + 1
            }
            None => 1,
        };
        let holder = Holder {
            run_id: run_id.to_string(),
            action: action.to_string(),
            host: host(),
            pid: std::process::id(),
            start_ticks: process_start(std::process::id()),
            acquired_at: Utc::now().to_rfc3339(),
            expires_at: now + ttl_seconds as i64,
        };
        let path = folder(root, date).path(&format!("{next:012}.json"));
        let bytes = serde_json::to_vec_pretty(&holder).expect("a lease serialises: this is a bug");
        let create = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match root
            .store
            .put_opts(&path, PutPayload::from(bytes), create)
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                let winner = read_holder(root, &path).await?;
                return Err(match winner {
                    Some(h) => busy(date, &h),
                    None => Error::Busy(format!("dt={}: another process took its lease", dt(date))),
                });
            }
            Err(e) => {
                return Err(Error::infra(
                    format!("taking the lease {}", root.object_url(&path)),
                    e,
                ));
            }
        }
        // Earlier generations are dead or released: remove them (best effort).
        for (_, old) in gens {
            let _ = root.store.delete(&old).await;
        }
        tracing::debug!(date = %dt(date), generation = next, run_id, "lease taken");
        let renewal = tokio::spawn(renew(
            root.clone(),
            path.clone(),
            holder.clone(),
            ttl_seconds,
        ));
        halt_point("leased");
        Ok(Lease {
            root: root.clone(),
            date,
            generation: next,
            path,
            holder,
            renewal,
        })
    }

    /// Still the holder? Checked before every step that changes what readers see: a process
    /// whose lease expired and was taken over stops here.
    pub async fn verify(&self) -> Result<()> {
        let gens = generations(&self.root, self.date).await?;
        let top = gens.last().map(|(g, _)| *g);
        let mine = read_holder(&self.root, &self.path).await?;
        let held =
            top == Some(self.generation) && mine.is_some_and(|h| h.run_id == self.holder.run_id);
        if held {
            Ok(())
        } else {
            Err(Error::Busy(format!(
                "dt={}: run {} lost its lease (generation {}) to another process; nothing more is changed",
                dt(self.date),
                self.holder.run_id,
                self.generation
            )))
        }
    }

    /// Give the lease back (best effort: a lease left behind expires).
    pub async fn release(self) {
        self.renewal.abort();
        if let Err(e) = self.root.store.delete(&self.path).await {
            tracing::warn!(lease = %self.root.object_url(&self.path), error = %e, "could not release the lease; it expires by itself");
        }
    }
}

/// Rewrite the holder's own lease with a later expiry every third of the TTL.
async fn renew(root: Location, path: Path, mut holder: Holder, ttl_seconds: u64) {
    let period = Duration::from_secs((ttl_seconds / 3).max(1));
    loop {
        tokio::time::sleep(period).await;
        holder.expires_at = Utc::now().timestamp() + ttl_seconds as i64;
        let bytes = serde_json::to_vec_pretty(&holder).expect("a lease serialises: this is a bug");
        if let Err(e) = root.store.put(&path, PutPayload::from(bytes)).await {
            tracing::warn!(lease = %root.object_url(&path), error = %e, "could not renew the lease");
        }
    }
}

fn busy(date: NaiveDate, h: &Holder) -> Error {
    let until = chrono::DateTime::from_timestamp(h.expires_at, 0)
        .map_or_else(|| h.expires_at.to_string(), |t| t.to_rfc3339());
    Error::Busy(format!(
        "dt={} is being written by another process: {} {} (host {}, pid {}, lease until {until}); retry later",
        dt(date),
        h.action,
        h.run_id,
        h.host,
        h.pid
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(pid: u32, start_ticks: Option<u64>) -> Holder {
        Holder {
            run_id: "r".into(),
            action: "run".into(),
            host: host(),
            pid,
            start_ticks,
            acquired_at: String::new(),
            expires_at: Utc::now().timestamp() + 3600,
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_killed_holder_is_dead_even_before_it_is_reaped() {
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let pid = child.id();
        let start = process_start(pid);
        assert!(start.is_some());
        assert!(holder(pid, start).is_live(Utc::now().timestamp()));
        child.kill().unwrap();
        // Not reaped yet: /proc/<pid> still exists, as a zombie.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while process_start(pid).is_some() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        assert!(!holder(pid, start).is_live(Utc::now().timestamp()));
        child.wait().unwrap();
        assert!(!holder(pid, start).is_live(Utc::now().timestamp()));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_reused_pid_is_not_the_holder_and_old_leases_still_count() {
        let me = std::process::id();
        let start = process_start(me).expect("this process runs");
        let now = Utc::now().timestamp();
        assert!(holder(me, Some(start)).is_live(now));
        assert!(!holder(me, Some(start + 1)).is_live(now));
        // A lease written before start times were recorded: the pid alone decides.
        let old: Holder = serde_json::from_str(&format!(
            r#"{{"run_id":"r","action":"run","host":{:?},"pid":{me},"acquired_at":"","expires_at":{}}}"#,
            host(),
            now + 60
        ))
        .unwrap();
        assert!(old.is_live(now));
        let mut expired = holder(me, Some(start));
        expired.expires_at = now;
        assert!(!expired.is_live(now));
    }
}
