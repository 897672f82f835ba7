//! The domain layer: the values that flow between stages. Plain data and the small pure
//! functions that define it (dates and windows, item text templates, vectors); no I/O, no
//! engine, no kernels. Every other layer may use it; it uses only [`crate::error`].

mod catalog;
mod dates;
mod lists;
mod records;
mod template;
mod vectors;
mod window;

pub use catalog::{Catalog, InputFile, Inputs};
pub use dates::{Window, dt, parse_date};
pub use lists::{ListRef, Lists, PreviousLists};
pub use records::{MetricRow, RankedList, SimilarItem, Source};
pub use template::Template;
pub use vectors::{USERS_PER_CHUNK, UserRows, UserVectors, Vectors, dot, normalize_rows, ranges};
pub use window::{Interactions, InvalidRows, WindowBuilder, WindowData};
