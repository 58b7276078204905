//! The canonical, OpenAI-shaped types every provider is translated to and from.

pub mod chat;
pub mod validate;

pub use chat::*;
