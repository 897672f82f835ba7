//! What the prepare stage makes of one training window.

use std::collections::{BTreeMap, HashMap};

use super::records::Interaction;

/// Interactions, exclusions and popularity of one training window.
#[derive(Debug, Default)]
pub struct WindowData {
    /// Per (user, item), sorted by user then item.
    pub interactions: Vec<Interaction>,
    /// Items each user must not be recommended (each list sorted).
    pub exclusions: HashMap<String, Vec<String>>,
    /// Available items, most popular first (ties: item_id), with their event counts.
    pub popularity: Vec<(String, i64)>,
    /// Valid (deduplicated) events per user: the active users of the window.
    pub user_events: HashMap<String, i64>,
}

impl WindowData {
    /// Users with any valid event in the window, sorted.
    pub fn active_users(&self) -> Vec<String> {
        let mut users: Vec<String> = self.user_events.keys().cloned().collect();
        users.sort();
        users
    }
}

/// Invalid rows by reason, and the total rows of the training window.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct InvalidRows {
    /// Every row of the window's partitions.
    pub total_rows: u64,
    /// Dropped rows by reason (`null_user_id`, `unknown_event_type`, ...).
    pub by_reason: BTreeMap<String, u64>,
}

impl InvalidRows {
    /// Dropped rows, all reasons together.
    pub fn invalid(&self) -> u64 {
        self.by_reason.values().sum()
    }
}
