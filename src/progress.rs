//! Progress of long loops: a bar on stderr when it is an interactive terminal; otherwise (a
//! scheduled run, logs collected) an info line with the count, the rate and the time left, at
//! most one every few seconds, so a long stage is never silent and the logs stay short.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Seconds between two progress lines when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// A progress bar over `len` units named `unit`, on an interactive terminal when `len` is at
/// least `min_len`; `None` otherwise.
pub fn bar(prefix: &str, unit: &str, len: usize, min_len: usize) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() || len < min_len {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{prefix}} [{{bar:40}}] {{pos}}/{{len}} {unit} {{per_sec}} eta {{eta}}"
        ))
        .expect("valid template: this is a bug"),
    );
    bar.set_prefix(prefix.to_string());
    Some(bar)
}

/// The progress of one loop over `total` units, shared by the threads that do them (`&self`
/// everywhere): `inc` after each unit or block of units. A bar on a terminal, else periodic
/// `info` lines (`stage`, `done`, `total`, `unit`, `rate_per_s`, `eta_s`). Finishes (clears the
/// bar, logs the total time if it logged anything) when dropped.
pub struct Progress {
    stage: &'static str,
    unit: &'static str,
    total: u64,
    done: AtomicU64,
    started: Instant,
    bar: Option<indicatif::ProgressBar>,
    /// When the last line was logged (no bar), and whether any was.
    last: Mutex<(Instant, bool)>,
    every: Duration,
}

impl Progress {
    /// Progress of `stage` over `total` units named `unit` (`"users"`, `"sweeps"`).
    pub fn new(stage: &'static str, unit: &'static str, total: usize) -> Progress {
        let bar = bar(stage, unit, total, 1);
        Progress::with(stage, unit, total, bar, LOG_EVERY)
    }

    /// Like [`Progress::new`], but periodic `info` lines even on a terminal, never a bar: an
    /// outer loop whose units run inner loops that draw bars of their own (the recommend
    /// stage's chunks of users, each a top-K kernel call).
    pub fn lines(stage: &'static str, unit: &'static str, total: usize) -> Progress {
        Progress::with(stage, unit, total, None, LOG_EVERY)
    }

    fn with(
        stage: &'static str,
        unit: &'static str,
        total: usize,
        bar: Option<indicatif::ProgressBar>,
        every: Duration,
    ) -> Progress {
        let now = Instant::now();
        Progress {
            stage,
            unit,
            total: total as u64,
            done: AtomicU64::new(0),
            started: now,
            bar,
            last: Mutex::new((now, false)),
            every,
        }
    }

    /// `n` more units are done.
    pub fn inc(&self, n: usize) {
        let done = self.done.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if let Some(bar) = &self.bar {
            bar.inc(n as u64);
            return;
        }
        let now = Instant::now();
        let Ok(mut last) = self.last.try_lock() else {
            return; // another thread is logging right now
        };
        if now.duration_since(last.0) < self.every || done >= self.total {
            return;
        }
        *last = (now, true);
        let elapsed = now.duration_since(self.started).as_secs_f64();
        let (rate, eta) = rate_and_eta(done, self.total, elapsed);
        tracing::info!(
            stage = self.stage,
            done,
            total = self.total,
            unit = self.unit,
            rate_per_s = format!("{rate:.1}"),
            eta_s = format!("{eta:.0}"),
            "progress"
        );
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let logged = self.last.get_mut().map(|l| l.1).unwrap_or(false);
        if logged {
            tracing::info!(
                stage = self.stage,
                done = *self.done.get_mut(),
                total = self.total,
                unit = self.unit,
                seconds = format!("{:.1}", self.started.elapsed().as_secs_f64()),
                "progress: done"
            );
        }
    }
}

/// Units per second so far and seconds left at that rate.
fn rate_and_eta(done: u64, total: u64, elapsed_s: f64) -> (f64, f64) {
    let rate = if elapsed_s > 0.0 {
        done as f64 / elapsed_s
    } else {
        0.0
    };
    let left = total.saturating_sub(done) as f64;
    let eta = if rate > 0.0 {
        left / rate
    } else {
        f64::INFINITY
    };
    (rate, eta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The log lines of `f`, one string per line.
    fn logged(f: impl FnOnce()) -> Vec<String> {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn without_a_terminal_it_logs_counts_and_eta_at_most_once_per_interval() {
        let lines = logged(|| {
            let p = Progress::with("topk", "users", 100, None, Duration::ZERO);
            for _ in 0..4 {
                std::thread::sleep(Duration::from_millis(2));
                p.inc(10);
            }
        });
        assert_eq!(lines.len(), 5, "{lines:?}");
        assert!(
            lines[0].contains("progress")
                && lines[0].contains("stage=\"topk\"")
                && lines[0].contains("done=10")
                && lines[0].contains("total=100")
                && lines[0].contains("eta_s="),
            "{lines:?}"
        );
        assert!(lines[4].contains("progress: done"), "{lines:?}");

        let quiet = logged(|| {
            let p = Progress::with("topk", "users", 100, None, Duration::from_secs(3600));
            for _ in 0..10 {
                p.inc(10);
            }
        });
        assert!(quiet.is_empty(), "a short loop logs nothing: {quiet:?}");
    }

    #[test]
    fn eta_is_the_units_left_at_the_rate_so_far() {
        let (rate, eta) = rate_and_eta(25, 100, 5.0);
        assert_eq!((rate, eta), (5.0, 15.0));
        assert!(rate_and_eta(0, 100, 0.0).1.is_infinite());
    }
}
