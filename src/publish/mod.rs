//! The publish layer: the output tables' schemas, the manifest, the commit protocol that makes a
//! date visible to readers, and reading back what was published (ARCHITECTURE.md "Outputs",
//! "Publishing").

mod commit;
mod halt;
mod lease;
mod manifest;
mod published;
mod runs;
mod schemas;
mod tables;

pub use commit::{Publisher, TableWriter};
pub use lease::Lease;
pub use manifest::{
    EmbeddingInfo, Manifest, ModelInfo, PublishedFile, UsersInfo, VectorsInfo, WindowInfo,
    is_published, manifest_path, read_manifest,
};
pub use published::{
    ManifestVersions, published, published_dates, published_previous, visit_published_lists,
};
pub use schemas::{
    ITEM_EMBEDDINGS, PUBLISHED_TABLES, item_embeddings, item_embeddings_schema, item_neighbors,
    item_neighbors_schema, item_vectors, item_vectors_schema, metrics, metrics_schema,
    recommendations, recommendations_schema, similar_items, similar_items_schema, user_embeddings,
    user_embeddings_schema,
};
pub use tables::{query, session, statement};
