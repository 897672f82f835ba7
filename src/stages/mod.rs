//! The stages of a night, in data-flow order: read, prepare, embed, hybrid, recommend,
//! evaluate, audit. Each takes values ([`crate::domain`]) and returns values; none imports
//! another, and only [`crate::pipeline`] orders them.

pub mod audit;
pub mod embed;
pub mod evaluate;
pub mod hybrid;
pub mod prepare;
pub mod read;
pub mod recommend;
