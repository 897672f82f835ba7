//! Object-store locations from URLs: `file:///abs`, relative paths (against the working
//! directory), `s3://bucket/prefix` (credentials and endpoint from the usual `AWS_*` environment
//! variables), `memory://prefix` (one in-process store, for tests).
//!
//! A [`Location`] is a store plus a prefix inside it; stages address files relative to it and
//! register the store with DataFusion so listing tables read the same objects.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use datafusion::datasource::listing::ListingTableUrl;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, RetryConfig};
use url::Url;

use super::faults;
use crate::error::{Context, Error, Result};

static MEMORY: LazyLock<Arc<InMemory>> = LazyLock::new(|| Arc::new(InMemory::new()));

/// Retries against remote stores are bounded so that an outage fails the run (exit 2) in
/// well under a minute instead of hanging a scheduler slot.
const MAX_RETRIES: usize = 3;
const RETRY_TIMEOUT: Duration = Duration::from_secs(20);

/// A store plus a prefix inside it.
#[derive(Clone)]
pub struct Location {
    /// The object store.
    pub store: Arc<dyn ObjectStore>,
    /// `scheme://authority/`: the key DataFusion knows the store by.
    pub base: Url,
    /// Path of this location inside the store (no leading or trailing slash).
    pub prefix: Path,
}

impl std::fmt::Debug for Location {
    // The store itself is left out: its Debug output may carry credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.url())
    }
}

impl Location {
    /// The location of a URL or path (module docs).
    pub fn parse(url: &str) -> Result<Location> {
        let bad = |why: &str| Error::Config(format!("invalid storage URL {url:?}: {why}"));
        if url.trim().is_empty() {
            return Err(bad("empty"));
        }
        match Url::parse(url) {
            Ok(u) if u.scheme() == "s3" => {
                let bucket = u.host_str().ok_or_else(|| bad("no bucket"))?;
                let store = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(RetryConfig {
                        max_retries: MAX_RETRIES,
                        retry_timeout: RETRY_TIMEOUT,
                        ..Default::default()
                    })
                    .build()
                    .map_err(|e| bad(&e.to_string()))?;
                Ok(Location {
                    store: faults::wrap(Arc::new(store)),
                    base: Url::parse(&format!("s3://{bucket}/")).expect("valid URL: this is a bug"),
                    prefix: Path::parse(u.path().trim_matches('/'))
                        .map_err(|e| bad(&e.to_string()))?,
                })
            }
            Ok(u) if u.scheme() == "memory" => {
                let path = format!("{}{}", u.host_str().unwrap_or(""), u.path());
                Ok(Location {
                    store: faults::wrap(MEMORY.clone()),
                    base: Url::parse("memory:///").expect("valid URL: this is a bug"),
                    prefix: Path::parse(path.trim_matches('/')).map_err(|e| bad(&e.to_string()))?,
                })
            }
            Ok(u) if u.scheme() == "file" => {
                let path = u
                    .to_file_path()
                    .map_err(|_| bad("not an absolute file path"))?;
                Ok(Self::local(&path))
            }
            Ok(u) if u.scheme().len() > 1 => Err(bad(&format!(
                "unsupported scheme {:?} (use file://, s3://, memory:// or a path)",
                u.scheme()
            ))),
            // A relative or absolute filesystem path (or a Windows drive letter).
            _ => {
                let cwd = std::env::current_dir().context("cannot read the working directory")?;
                Ok(Self::local(&cwd.join(url)))
            }
        }
    }

    fn local(path: &std::path::Path) -> Location {
        let mut parts: Vec<String> = Vec::new();
        for c in path.components() {
            match c {
                std::path::Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
                std::path::Component::ParentDir => {
                    parts.pop();
                }
                _ => {}
            }
        }
        let prefix = Path::from_iter(parts.iter().map(String::as_str));
        Location {
            store: faults::wrap(Arc::new(LocalFileSystem::new())),
            base: Url::parse("file:///").expect("valid URL: this is a bug"),
            prefix,
        }
    }

    /// `scheme://authority/prefix/` of this location.
    pub fn url(&self) -> String {
        if self.prefix.as_ref().is_empty() {
            self.base.to_string()
        } else {
            format!("{}{}/", self.base, self.prefix)
        }
    }

    /// The location `relative` below this one.
    pub fn child(&self, relative: &str) -> Location {
        let mut prefix = self.prefix.clone();
        for part in relative.split('/').filter(|p| !p.is_empty()) {
            prefix = prefix.join(part);
        }
        Location {
            store: self.store.clone(),
            base: self.base.clone(),
            prefix,
        }
    }

    /// The object at `relative` below this location.
    pub fn path(&self, relative: &str) -> Path {
        self.child(relative).prefix
    }

    /// The path inside this store of an object URL of it (`None` for another store's URL).
    pub fn object_path(&self, url: &str) -> Option<Path> {
        let rest = url.strip_prefix(self.base.as_str())?;
        Path::parse(rest).ok()
    }

    /// The full URL of an object of this store.
    pub fn object_url(&self, path: &Path) -> String {
        format!("{}{}", self.base, path)
    }

    /// This location as a DataFusion table URL.
    pub fn listing_url(&self) -> Result<ListingTableUrl> {
        ListingTableUrl::parse(self.url()).context(format!("invalid table URL {}", self.url()))
    }

    /// Register this location's store with a session.
    pub fn register(&self, ctx: &SessionContext) {
        ctx.register_object_store(&self.base, self.store.clone());
    }

    /// Every object below this location, sorted by path.
    pub async fn list_files(&self) -> Result<Vec<ObjectMeta>> {
        let mut files: Vec<ObjectMeta> = self
            .store
            .list(Some(&self.prefix))
            .try_collect()
            .await
            .context(format!("cannot list {}", self.url()))?;
        files.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(files)
    }

    /// Names of the immediate sub-directories of this location.
    pub async fn list_dirs(&self) -> Result<Vec<String>> {
        Ok(self.list_dir().await?.1)
    }

    /// The objects directly in this location, sorted by path, and the names of its immediate
    /// sub-directories, sorted.
    pub async fn list_dir(&self) -> Result<(Vec<ObjectMeta>, Vec<String>)> {
        let listing = self
            .store
            .list_with_delimiter(Some(&self.prefix))
            .await
            .context(format!("cannot list {}", self.url()))?;
        let mut files = listing.objects;
        files.sort_by(|a, b| a.location.cmp(&b.location));
        let mut dirs: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        dirs.sort();
        Ok((files, dirs))
    }

    /// Does the object exist?
    pub async fn exists(&self, path: &Path) -> Result<bool> {
        match self.store.head(path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(Error::infra(
                format!("cannot read {}", self.object_url(path)),
                e,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_map_to_stores_and_prefixes() {
        let l = Location::parse("s3://bucket/a/b/").unwrap();
        assert_eq!(l.url(), "s3://bucket/a/b/");
        let l = Location::parse("memory://out/x").unwrap();
        assert_eq!(l.url(), "memory:///out/x/");
        let l = Location::parse("file:///tmp/a/../b").unwrap();
        assert_eq!(l.url(), "file:///tmp/b/");
        let l = Location::parse("rel/dir").unwrap();
        assert!(
            l.url().starts_with("file:///") && l.url().ends_with("/rel/dir/"),
            "{}",
            l.url()
        );
        assert_eq!(
            l.child("x/dt=2020-01-01").prefix.filename(),
            Some("dt=2020-01-01")
        );
        assert!(matches!(
            Location::parse("ftp://x/y"),
            Err(Error::Config(_))
        ));
        assert!(matches!(Location::parse(""), Err(Error::Config(_))));
    }
}
