//! Usage as OpenAI-family providers send it, normalised to OpenAI's meaning.

use crate::domain::{CompletionTokensDetails, PromptTokensDetails, TokenCounts};
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct WireUsage {
    #[serde(default)]
    pub prompt_tokens: Option<u64>,
    #[serde(default)]
    pub completion_tokens: Option<u64>,
    #[serde(default)]
    pub total_tokens: Option<u64>,
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    #[serde(default)]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
    /// DeepSeek's name for cached input.
    #[serde(default)]
    pub prompt_cache_hit_tokens: Option<u64>,
}

impl WireUsage {
    /// OpenAI meaning: cached tokens are part of `prompt`, reasoning tokens part of `completion`.
    /// Some providers (xAI) leave reasoning out of `completion_tokens`; their `total_tokens` then
    /// equals prompt + completion + reasoning, which is how it is detected.
    pub fn normalize(&self) -> TokenCounts {
        let prompt = self.prompt_tokens.unwrap_or(0);
        let mut completion = self.completion_tokens.unwrap_or(0);
        let reasoning = self
            .completion_tokens_details
            .as_ref()
            .and_then(|d| d.reasoning_tokens)
            .unwrap_or(0);
        // Checked: the counts are whatever the upstream sent.
        let sum = prompt
            .checked_add(completion)
            .and_then(|s| s.checked_add(reasoning));
        if reasoning > 0 && sum.is_some() && self.total_tokens == sum {
            completion += reasoning;
        }
        let details = self.prompt_tokens_details.as_ref();
        TokenCounts {
            prompt,
            completion,
            cached: details
                .and_then(|d| d.cached_tokens)
                .or(self.prompt_cache_hit_tokens)
                .unwrap_or(0)
                .min(prompt),
            reasoning: reasoning.min(completion),
            cache_write: details.and_then(|d| d.cache_write_tokens).unwrap_or(0),
            audio_prompt: details.and_then(|d| d.audio_tokens).unwrap_or(0),
            audio_completion: self
                .completion_tokens_details
                .as_ref()
                .and_then(|d| d.audio_tokens)
                .unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> TokenCounts {
        serde_json::from_str::<WireUsage>(s).unwrap().normalize()
    }

    #[test]
    fn openai_usage_is_kept() {
        let t = parse(
            r#"{"prompt_tokens":16,"completion_tokens":363,"total_tokens":379,"prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":300}}"#,
        );
        assert_eq!(
            t,
            TokenCounts {
                prompt: 16,
                completion: 363,
                cached: 4,
                reasoning: 300,
                cache_write: 0,
                audio_prompt: 0,
                audio_completion: 0
            }
        );
    }

    #[test]
    fn xai_reasoning_is_folded_into_completion() {
        let t = parse(
            r#"{"prompt_tokens":12,"completion_tokens":1,"total_tokens":241,"prompt_tokens_details":{"cached_tokens":2},"completion_tokens_details":{"reasoning_tokens":228}}"#,
        );
        assert_eq!(t.completion, 229);
        assert_eq!(t.reasoning, 228);
        assert_eq!(t.cached, 2);
    }

    /// Counts near `u64::MAX` overflowed: a panic in debug builds, nonsense in release.
    #[test]
    fn huge_counts_do_not_overflow() {
        let t = parse(
            r#"{"prompt_tokens":18446744073709551615,"completion_tokens":1,"total_tokens":5,"completion_tokens_details":{"reasoning_tokens":1}}"#,
        );
        assert_eq!((t.prompt, t.completion, t.reasoning), (u64::MAX, 1, 1));
    }

    #[test]
    fn deepseek_cache_hits_are_cached_tokens() {
        let t = parse(
            r#"{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,"prompt_cache_hit_tokens":6,"prompt_cache_miss_tokens":4}"#,
        );
        assert_eq!(t.cached, 6);
    }
}
