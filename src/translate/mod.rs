//! Pure translation between the canonical OpenAI shapes (`domain`) and each provider's wire format.
//! No IO here: every function takes values and returns values, so all of it is covered by golden
//! fixtures under `tests/fixtures/`.

pub mod gemini;
pub mod openai_dialects;
pub mod sse;
