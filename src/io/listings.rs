//! Directory listings a session keeps: the runtime every session of recjob starts from, whose
//! cache pins the file lists of input tables ([`super::pinned_table`]) and lists every other
//! table afresh.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use datafusion::common::{HashMap as DFHashMap, TableReference};
use datafusion::execution::cache::cache_manager::{
    CacheManagerConfig, CachedFileList, DEFAULT_LIST_FILES_CACHE_MEMORY_LIMIT,
};
use datafusion::execution::cache::{Cache, CacheEntryInfo, CacheValue, TableScopedPath};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;

/// The runtime every session of recjob starts from: DataFusion's, with [`PinnedListings`] as
/// its cache of directory listings.
pub fn runtime_builder() -> RuntimeEnvBuilder {
    RuntimeEnvBuilder::new().with_cache_manager(
        CacheManagerConfig::default()
            .with_list_files_cache(Some(Arc::new(PinnedListings::default())))
            .with_list_files_cache_limit(DEFAULT_LIST_FILES_CACHE_MEMORY_LIMIT),
    )
}

/// The listings a session keeps: only those of tables opened with a table reference
/// ([`crate::io::pinned_table`]), the inputs a run checked file by file. Their scans read
/// exactly the files that were checked, and a query does not list the whole table root
/// again (a behavior root holds years of day partitions).
///
/// Every other table (the published outputs above all) is listed afresh by each scan: a
/// cached listing would hide files published after it (by this run's commit, or by another
/// process).
#[derive(Debug, Default)]
pub struct PinnedListings {
    pinned: Mutex<HashMap<TableScopedPath, CachedFileList>>,
}

impl PinnedListings {
    fn pinned(&self) -> MutexGuard<'_, HashMap<TableScopedPath, CachedFileList>> {
        self.pinned.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Cache<TableScopedPath, CachedFileList> for PinnedListings {
    fn get(&self, key: &TableScopedPath) -> Option<CachedFileList> {
        self.pinned().get(key).cloned()
    }

    /// Keeps listings of tables with a table reference; DataFusion's own fills of any other
    /// table are dropped, so that table is listed again by its next scan.
    fn put(&self, key: &TableScopedPath, value: CachedFileList) -> Option<CachedFileList> {
        key.table.as_ref()?;
        self.pinned().insert(key.clone(), value)
    }

    fn remove(&self, key: &TableScopedPath) -> Option<CachedFileList> {
        self.pinned().remove(key)
    }

    fn contains_key(&self, key: &TableScopedPath) -> bool {
        self.pinned().contains_key(key)
    }

    fn len(&self) -> usize {
        self.pinned().len()
    }

    fn clear(&self) {
        self.pinned().clear();
    }

    fn name(&self) -> String {
        "recjob pinned listings".into()
    }

    /// Pinned listings are a run's input files: they are not evicted.
    fn cache_limit(&self) -> usize {
        usize::MAX
    }

    fn update_cache_limit(&self, _limit: usize) {}

    fn cache_ttl(&self) -> Option<Duration> {
        None
    }

    fn update_cache_ttl(&self, _ttl: Option<Duration>) {}

    fn drop_table_entries(&self, table: &TableReference) -> datafusion::error::Result<()> {
        self.pinned().retain(|k, _| k.table.as_ref() != Some(table));
        Ok(())
    }

    fn list_entries(&self) -> DFHashMap<TableScopedPath, CacheEntryInfo<CachedFileList>> {
        self.pinned()
            .iter()
            .map(|(k, v)| {
                let info = CacheEntryInfo {
                    value: v.clone(),
                    size_bytes: v.size(),
                    hits: 0,
                    expires: None,
                };
                (k.clone(), info)
            })
            .collect()
    }
}
