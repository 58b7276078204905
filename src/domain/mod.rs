//! The canonical, OpenAI-shaped types every provider is translated to and from.

pub mod chat;
pub mod embeddings;
pub mod validate;

pub use chat::*;
pub use embeddings::*;
