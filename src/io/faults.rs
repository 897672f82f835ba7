//! Fault injection for tests: an object store wrapper that counts the requests of a process and
//! fails, delays or truncates one of them, chosen by the `RECJOB_FAULTS` environment variable.
//! It proves that whichever storage request fails, a run either publishes completely or
//! publishes nothing and exits with a code that says "retry" (`tests/it/faults.rs`).
//!
//! `RECJOB_FAULTS` is a comma-separated list of:
//! - `fail=N`: request N (1-based, in the order the process issues them) fails;
//! - `delay=N:MS`: request N waits MS milliseconds first;
//! - `hold=N:PATH`: request N creates `PATH.held`, then waits until `PATH` exists (at most ten
//!   minutes): a test holds a request exactly while it does something else, with no timing;
//! - `partial_list=N`: request N, if it is a listing, returns only the first half of its entries;
//! - `trace`: every request is written to stderr as `recjob-faults: N op path`.
//!
//! Unset (production), stores are not wrapped at all.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// Requests issued by this process through wrapped stores.
static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// What to do, parsed from `RECJOB_FAULTS`.
#[derive(Debug, Clone, Default)]
struct Plan {
    fail: Option<u64>,
    delay: Option<(u64, u64)>,
    hold: Option<(u64, std::path::PathBuf)>,
    partial_list: Option<u64>,
    trace: bool,
}

impl Plan {
    fn from_env() -> Option<Plan> {
        let spec = std::env::var("RECJOB_FAULTS").ok()?;
        let mut plan = Plan::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some(("fail", n)) => plan.fail = n.parse().ok(),
                Some(("partial_list", n)) => plan.partial_list = n.parse().ok(),
                Some(("delay", v)) => {
                    plan.delay = v
                        .split_once(':')
                        .and_then(|(n, ms)| Some((n.parse().ok()?, ms.parse().ok()?)))
                }
                Some(("hold", v)) => {
                    plan.hold = v
                        .split_once(':')
                        .and_then(|(n, path)| Some((n.parse().ok()?, path.into())))
                }
                None if part == "trace" => plan.trace = true,
                _ => eprintln!("recjob-faults: ignoring {part:?}"),
            }
        }
        Some(plan)
    }
}

/// `store`, wrapped when `RECJOB_FAULTS` is set.
pub fn wrap(store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
    match Plan::from_env() {
        Some(plan) => Arc::new(Faulty { inner: store, plan }),
        None => store,
    }
}

#[derive(Debug)]
struct Faulty {
    inner: Arc<dyn ObjectStore>,
    plan: Plan,
}

impl fmt::Display for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

/// What happens to one request.
enum Fate {
    Normal,
    Fail(u64),
    Partial,
}

impl Faulty {
    async fn next(&self, op: &str, path: Option<&Path>) -> Fate {
        let n = REQUESTS.fetch_add(1, Ordering::SeqCst) + 1;
        if self.plan.trace {
            eprintln!(
                "recjob-faults: {n} {op} {}",
                path.map_or(String::new(), |p| p.to_string())
            );
        }
        if let Some((at, ms)) = self.plan.delay
            && at == n
        {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if let Some((at, until)) = &self.plan.hold
            && *at == n
        {
            let mut held = until.clone().into_os_string();
            held.push(".held");
            if let Err(e) = std::fs::write(&held, n.to_string()) {
                eprintln!(
                    "recjob-faults: cannot create {}: {e}",
                    held.to_string_lossy()
                );
            }
            for _ in 0..30_000 {
                if until.exists() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        if self.plan.fail == Some(n) {
            eprintln!("recjob-faults: failing request {n} ({op})");
            Fate::Fail(n)
        } else if self.plan.partial_list == Some(n) {
            eprintln!("recjob-faults: truncating listing {n} ({op})");
            Fate::Partial
        } else {
            Fate::Normal
        }
    }
}

fn injected(n: u64) -> object_store::Error {
    object_store::Error::Generic {
        store: "faults",
        source: format!("injected failure of request {n} (RECJOB_FAULTS)").into(),
    }
}

#[async_trait]
impl ObjectStore for Faulty {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        if let Fate::Fail(n) = self.next("put", Some(location)).await {
            return Err(injected(n));
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        if let Fate::Fail(n) = self.next("put_multipart", Some(location)).await {
            return Err(injected(n));
        }
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        if let Fate::Fail(n) = self.next("get", Some(location)).await {
            return Err(injected(n));
        }
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<Vec<bytes::Bytes>> {
        if let Fate::Fail(n) = self.next("get_ranges", Some(location)).await {
            return Err(injected(n));
        }
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        // Deletes are counted one by one, as they are issued.
        let inner = self.inner.clone();
        let plan = self.plan.clone();
        let counted = locations
            .then(move |p| {
                let inner = inner.clone();
                let plan = plan.clone();
                async move {
                    let p = p?;
                    let me = Faulty { inner, plan };
                    if let Fate::Fail(n) = me.next("delete", Some(&p)).await {
                        return Err(injected(n));
                    }
                    Ok(p)
                }
            })
            .boxed();
        self.inner.delete_stream(counted)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let inner = self.inner.clone();
        let plan = self.plan.clone();
        let prefix = prefix.cloned();
        futures::stream::once(async move {
            let me = Faulty {
                inner: inner.clone(),
                plan,
            };
            let fate = me.next("list", prefix.as_ref()).await;
            let all = inner.list(prefix.as_ref());
            match fate {
                Fate::Fail(n) => futures::stream::once(async move { Err(injected(n)) }).boxed(),
                Fate::Partial => {
                    let entries: Vec<Result<ObjectMeta>> = all.collect().await;
                    let half = entries.len() / 2;
                    futures::stream::iter(entries.into_iter().take(half)).boxed()
                }
                Fate::Normal => all,
            }
        })
        .flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        match self.next("list_with_delimiter", prefix).await {
            Fate::Fail(n) => Err(injected(n)),
            Fate::Partial => {
                let mut r = self.inner.list_with_delimiter(prefix).await?;
                r.common_prefixes.truncate(r.common_prefixes.len() / 2);
                r.objects.truncate(r.objects.len() / 2);
                Ok(r)
            }
            Fate::Normal => self.inner.list_with_delimiter(prefix).await,
        }
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        if let Fate::Fail(n) = self.next("copy", Some(to)).await {
            return Err(injected(n));
        }
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        if let Fate::Fail(n) = self.next("rename", Some(to)).await {
            return Err(injected(n));
        }
        self.inner.rename_opts(from, to, options).await
    }
}
