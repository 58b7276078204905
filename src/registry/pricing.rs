//! Prices a request: which catalog entry applies to a model id (deterministic, and recorded on the
//! log row so every price can be explained), and what the usage costs.
//!
//! Matching, first hit wins:
//! 1. `override`: a price configured for this exact model id (`[pricing.overrides]`), since an
//!    operator's explicit price beats the registry;
//! 2. `exact`: the id in the provider's own models.dev catalog (openai, google for gemini, deepseek,
//!    xai; never a reseller's entry);
//! 3. `stripped`: the id with a date or version suffix removed, repeatedly (`-2024-08-06`, `-0613`,
//!    `-001`, `-latest`, `-exp`, `-preview`, `-preview-05-20`);
//! 4. `alias`: a configured alias (`[pricing.aliases]`, `id = "provider/model"` or a bare id of
//!    the same provider);
//! 5. `none`: no price; the row's cost is NULL and `price_note` says why (never a made-up 0).
//!
//! Both the id sent upstream and the id the upstream reported are tried at each step, in that order.

use super::{Catalog, Cost, ModelInfo, PROVIDER_MAP, TierPrices};
use crate::domain::TokenCounts;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PricingConfig {
    /// Model id → `provider/model` (or a bare id of the same provider) whose price it takes.
    pub aliases: BTreeMap<String, String>,
    /// Model id → price in USD per million tokens; wins over the registry.
    pub overrides: BTreeMap<String, PriceOverride>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PriceOverride {
    pub input: f64,
    pub output: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<f64>,
}

impl PriceOverride {
    fn to_cost(&self) -> Cost {
        Cost {
            input: self.input,
            output: self.output,
            cache_read: self.cache_read,
            cache_write: self.cache_write,
            reasoning: self.reasoning,
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceSource {
    Override,
    Exact,
    Stripped,
    Alias,
    None,
}

impl PriceSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Override => "override",
            Self::Exact => "exact",
            Self::Stripped => "stripped",
            Self::Alias => "alias",
            Self::None => "none",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PriceMatch {
    pub source: PriceSource,
    pub cost: Option<Cost>,
    /// What matched (`openai/gpt-4o`), or why nothing did.
    pub note: String,
}

fn catalog_provider(gateway: &str) -> Option<&'static str> {
    PROVIDER_MAP
        .iter()
        .find(|(_, g)| *g == gateway)
        .map(|(_, g)| *g)
}

/// Removes one date or version suffix, if the id ends with one.
pub fn strip_suffix_once(id: &str) -> Option<&str> {
    let is_digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    for word in ["-latest", "-exp", "-preview"] {
        if let Some(base) = id.strip_suffix(word) {
            return Some(base);
        }
    }
    // -YYYY-MM-DD
    if id.len() > 11 {
        let (base, tail) = id.split_at(id.len() - 11);
        let t = &tail[1..];
        if tail.starts_with('-')
            && is_digits(&t[..4], 4)
            && &t[4..5] == "-"
            && is_digits(&t[5..7], 2)
            && &t[7..8] == "-"
            && is_digits(&t[8..], 2)
        {
            return Some(base);
        }
    }
    // -preview-MM-DD, -exp-MMDD, -MM-DD
    for prefix in ["-preview-", "-exp-"] {
        if let Some(pos) = id.rfind(prefix) {
            let tail = &id[pos + prefix.len()..];
            if !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
                return Some(&id[..pos]);
            }
        }
    }
    // -0613 (MMDD), -001 (version), -20240806 (YYYYMMDD)
    let (base, last) = id.rsplit_once('-')?;
    if !base.is_empty() && (is_digits(last, 4) || is_digits(last, 3) || is_digits(last, 8)) {
        return Some(base);
    }
    None
}

/// Finds the price for `provider`'s model. `candidates` are the ids to try, in order (the id sent
/// upstream, then the one the upstream reported).
pub fn find_price(
    catalog: &Catalog,
    config: &PricingConfig,
    provider: &str,
    candidates: &[&str],
) -> PriceMatch {
    let mut ids: Vec<&str> = Vec::with_capacity(candidates.len());
    for c in candidates {
        if !c.is_empty() && !ids.contains(c) {
            ids.push(c);
        }
    }
    for id in &ids {
        if let Some(o) = config.overrides.get(*id) {
            return PriceMatch {
                source: PriceSource::Override,
                cost: Some(o.to_cost()),
                note: format!("configured price for {id}"),
            };
        }
    }
    let own = catalog_provider(provider);
    let lookup = |id: &str| -> Option<&ModelInfo> {
        own.and_then(|p| catalog.model(p, id)).map(AsRef::as_ref)
    };
    for id in &ids {
        if let Some(m) = lookup(id).filter(|m| m.cost.is_some()) {
            return found(PriceSource::Exact, provider, m);
        }
    }
    for id in &ids {
        let mut cur = *id;
        while let Some(base) = strip_suffix_once(cur) {
            if let Some(m) = lookup(base).filter(|m| m.cost.is_some()) {
                return found(PriceSource::Stripped, provider, m);
            }
            cur = base;
        }
    }
    for id in &ids {
        if let Some(target) = config.aliases.get(*id) {
            let (p, m) = target
                .split_once('/')
                .filter(|(p, _)| catalog_provider(p).is_some())
                .unwrap_or((provider, target.as_str()));
            if let Some(info) = catalog.model(p, m).filter(|m| m.cost.is_some()) {
                return found(PriceSource::Alias, p, info);
            }
        }
    }
    let note = if catalog.is_empty() {
        "no registry loaded yet, so the request is unpriced".to_string()
    } else if own.is_none() {
        format!(
            "the registry has no catalog for provider '{provider}'; configure [pricing.overrides] or [pricing.aliases]"
        )
    } else {
        format!(
            "no price for '{}' in {provider}'s registry catalog (snapshot {})",
            ids.first().copied().unwrap_or_default(),
            catalog.version
        )
    };
    PriceMatch {
        source: PriceSource::None,
        cost: None,
        note,
    }
}

fn found(source: PriceSource, provider: &str, m: &ModelInfo) -> PriceMatch {
    PriceMatch {
        source,
        cost: m.cost.clone(),
        note: format!("{provider}/{}", m.id),
    }
}

/// The prices that apply to a request with this many prompt tokens: the highest context tier
/// whose size the prompt exceeds (fields a tier leaves out fall back to the base price).
fn effective(cost: &Cost, prompt_tokens: u64) -> Cost {
    let tier: Option<&TierPrices> = cost
        .tiers
        .iter()
        .filter(|t| {
            t.tier.kind.as_deref().is_none_or(|k| k == "context") && prompt_tokens > t.tier.size
        })
        .max_by_key(|t| t.tier.size)
        .map(|t| &t.prices)
        .or_else(|| {
            cost.context_over_200k
                .as_ref()
                .filter(|_| cost.tiers.is_empty() && prompt_tokens > 200_000)
        });
    let Some(t) = tier else {
        return cost.clone();
    };
    Cost {
        input: t.input.unwrap_or(cost.input),
        output: t.output.unwrap_or(cost.output),
        reasoning: t.reasoning.or(cost.reasoning),
        cache_read: t.cache_read.or(cost.cache_read),
        cache_write: t.cache_write.or(cost.cache_write),
        ..cost.clone()
    }
}

/// USD for this usage (OpenAI meaning) at these prices (USD per million tokens):
///
/// ```text
/// uncached    = prompt − cached − cache_write − audio_in
/// visible     = completion − reasoning − audio_out
/// cost = uncached × input + cached × (cache_read ?? input) + cache_write × (cache_write ?? input)
///      + audio_in × (input_audio ?? input)
///      + visible × output + reasoning × (reasoning ?? output) + audio_out × (output_audio ?? output)
///                                                                                  all ÷ 1e6
/// ```
/// Cache writes and audio tokens are counted inside `prompt_tokens`/`completion_tokens` (OpenAI's
/// meaning), so they are taken out of the plain parts rather than billed twice.
pub fn cost_usd(cost: &Cost, u: &TokenCounts) -> f64 {
    let p = effective(cost, u.prompt);
    let cached = u.cached.min(u.prompt);
    let cache_write = u.cache_write.min(u.prompt - cached);
    let audio_in = u.audio_prompt.min(u.prompt - cached - cache_write);
    let uncached = u.prompt - cached - cache_write - audio_in;
    let reasoning = u.reasoning.min(u.completion);
    let audio_out = u.audio_completion.min(u.completion - reasoning);
    let visible = u.completion - reasoning - audio_out;
    (uncached as f64 * p.input
        + cached as f64 * p.cache_read.unwrap_or(p.input)
        + cache_write as f64 * p.cache_write.unwrap_or(p.input)
        + audio_in as f64 * p.input_audio.unwrap_or(p.input)
        + visible as f64 * p.output
        + reasoning as f64 * p.reasoning.unwrap_or(p.output)
        + audio_out as f64 * p.output_audio.unwrap_or(p.output))
        / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::parse(
            br#"{
              "openai": {"models": {
                "gpt-4o-mini": {"id": "gpt-4o-mini", "cost": {"input": 0.15, "output": 0.6, "cache_read": 0.075}},
                "gpt-4o-2024-05-13": {"id": "gpt-4o-2024-05-13", "cost": {"input": 5, "output": 15}},
                "gpt-4o": {"id": "gpt-4o", "cost": {"input": 2.5, "output": 10, "cache_read": 1.25}},
                "o3": {"id": "o3", "cost": {"input": 2, "output": 8, "reasoning": 9}}
              }},
              "google": {"models": {
                "gemini-2.5-pro": {"id": "gemini-2.5-pro", "cost": {"input": 1.25, "output": 10, "cache_read": 0.125,
                   "tiers": [{"input": 2.5, "output": 15, "cache_read": 0.25, "tier": {"type": "context", "size": 200000}}]}},
                "gemini-2.0-flash": {"id": "gemini-2.0-flash", "cost": {"input": 0.1, "output": 0.4}},
                "gemini-embedding": {"id": "gemini-embedding"}
              }},
              "xai": {"models": {"grok-3-mini": {"id": "grok-3-mini", "cost": {"input": 0.3, "output": 0.5, "reasoning": 0.5, "cache_read": 0.075}}}}
            }"#,
        )
        .unwrap()
    }

    fn price(provider: &str, ids: &[&str]) -> PriceMatch {
        find_price(&catalog(), &PricingConfig::default(), provider, ids)
    }

    #[test]
    fn dated_and_prefixed_ids_share_a_price() {
        let a = price("openai", &["gpt-4o-mini-2024-07-18"]);
        let b = price("openai", &["gpt-4o-mini"]);
        assert_eq!(a.source, PriceSource::Stripped);
        assert_eq!(b.source, PriceSource::Exact);
        assert_eq!(a.cost, b.cost);
        // A dated id the catalog lists itself keeps its own price.
        let old = price("openai", &["gpt-4o-2024-05-13"]);
        assert_eq!(
            (old.source, old.cost.unwrap().input),
            (PriceSource::Exact, 5.0)
        );
        assert_eq!(
            price("openai", &["gpt-4o-2024-08-06"]).cost.unwrap().input,
            2.5
        );
        // The sent id wins over the reported one.
        assert_eq!(
            price("openai", &["gpt-4o", "gpt-4o-2024-05-13"])
                .cost
                .unwrap()
                .input,
            2.5
        );
    }

    #[test]
    fn suffixes() {
        for (id, base) in [
            ("gpt-4o-2024-08-06", "gpt-4o"),
            ("gpt-4-0613", "gpt-4"),
            ("gemini-2.0-flash-001", "gemini-2.0-flash"),
            ("gemini-2.0-flash-exp", "gemini-2.0-flash"),
            ("gemini-2.5-flash-preview-05-20", "gemini-2.5-flash"),
            ("chatgpt-4o-latest", "chatgpt-4o"),
            ("model-20240806", "model"),
        ] {
            assert_eq!(strip_suffix_once(id), Some(base), "{id}");
        }
        assert_eq!(strip_suffix_once("gpt-4o"), None);
        assert_eq!(strip_suffix_once("o3"), None);
        assert_eq!(strip_suffix_once("grok-4.3"), None);
        let m = price("gemini", &["gemini-2.0-flash-exp"]);
        assert_eq!(m.source, PriceSource::Stripped);
        assert_eq!(m.note, "gemini/gemini-2.0-flash");
    }

    #[test]
    fn unknown_or_unpriced_models_have_no_price_and_say_why() {
        let m = price("openai", &["my-fine-tune"]);
        assert_eq!((m.source, m.cost), (PriceSource::None, None));
        assert!(m.note.contains("my-fine-tune"), "{}", m.note);
        // Listed without a cost: no price, not zero.
        assert_eq!(price("gemini", &["gemini-embedding"]).cost, None);
        // Never another provider's entry.
        assert_eq!(price("deepseek", &["gpt-4o"]).cost, None);
        let empty = find_price(
            &Catalog::default(),
            &PricingConfig::default(),
            "openai",
            &["gpt-4o"],
        );
        assert!(empty.note.contains("no registry"));
    }

    #[test]
    fn overrides_and_aliases() {
        let mut cfg = PricingConfig::default();
        cfg.aliases.insert("my-4o".into(), "openai/gpt-4o".into());
        cfg.aliases
            .insert("local-llama".into(), "gemini/gemini-2.0-flash".into());
        cfg.overrides.insert(
            "gpt-4o".into(),
            PriceOverride {
                input: 1.0,
                output: 2.0,
                cache_read: None,
                cache_write: None,
                reasoning: None,
            },
        );
        let c = catalog();
        let m = find_price(&c, &cfg, "openai", &["gpt-4o"]);
        assert_eq!(
            (m.source, m.cost.unwrap().input),
            (PriceSource::Override, 1.0)
        );
        let m = find_price(&c, &cfg, "local", &["local-llama"]);
        assert_eq!((m.source, m.cost.unwrap().input), (PriceSource::Alias, 0.1));
        let m = find_price(&c, &cfg, "openai", &["my-4o"]);
        assert_eq!(m.source, PriceSource::Alias);
    }

    fn close(a: f64, b: f64) {
        assert!(((a - b) / b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn the_formula() {
        let c = catalog();
        let cost = |p: &str, id: &str| c.model(p, id).unwrap().cost.clone().unwrap();
        // Cached input at the cache price, never twice.
        let u = TokenCounts {
            prompt: 1000,
            completion: 500,
            cached: 400,
            reasoning: 0,
            cache_write: 0,
            audio_prompt: 0,
            audio_completion: 0,
        };
        close(
            cost_usd(&cost("openai", "gpt-4o"), &u),
            (600.0 * 2.5 + 400.0 * 1.25 + 500.0 * 10.0) / 1e6,
        );
        // Reasoning at its own price.
        let u = TokenCounts {
            prompt: 100,
            completion: 300,
            cached: 0,
            reasoning: 200,
            cache_write: 0,
            audio_prompt: 0,
            audio_completion: 0,
        };
        close(
            cost_usd(&cost("openai", "o3"), &u),
            (100.0 * 2.0 + 100.0 * 8.0 + 200.0 * 9.0) / 1e6,
        );
        // The xAI tick check from the wire-format notes: 1,176,500 ticks of 1e-10 USD.
        let u = TokenCounts {
            prompt: 12,
            completion: 229,
            cached: 2,
            reasoning: 228,
            cache_write: 0,
            audio_prompt: 0,
            audio_completion: 0,
        };
        close(
            cost_usd(&cost("xai", "grok-3-mini"), &u),
            1_176_500.0 * 1e-10,
        );
        // Above the context tier, the tier's prices.
        let u = TokenCounts {
            prompt: 250_000,
            completion: 1000,
            cached: 50_000,
            reasoning: 0,
            cache_write: 0,
            audio_prompt: 0,
            audio_completion: 0,
        };
        close(
            cost_usd(&cost("gemini", "gemini-2.5-pro"), &u),
            (200_000.0 * 2.5 + 50_000.0 * 0.25 + 1000.0 * 15.0) / 1e6,
        );
        // Audio at its own prices, out of the text parts.
        let u = TokenCounts {
            prompt: 1000,
            completion: 500,
            cached: 0,
            reasoning: 0,
            cache_write: 0,
            audio_prompt: 200,
            audio_completion: 100,
        };
        let audio = Cost {
            input: 1.0,
            output: 2.0,
            input_audio: Some(10.0),
            output_audio: Some(20.0),
            ..Default::default()
        };
        close(
            cost_usd(&audio, &u),
            (800.0 + 200.0 * 10.0 + 400.0 * 2.0 + 100.0 * 20.0) / 1e6,
        );
        // Cache writes come out of the uncached part.
        let u = TokenCounts {
            prompt: 1000,
            completion: 0,
            cached: 0,
            reasoning: 0,
            cache_write: 300,
            audio_prompt: 0,
            audio_completion: 0,
        };
        close(
            cost_usd(
                &Cost {
                    input: 1.0,
                    output: 1.0,
                    cache_write: Some(1.25),
                    ..Default::default()
                },
                &u,
            ),
            (700.0 + 375.0) / 1e6,
        );
    }
}

/// The price book the request path uses: the current catalog and the configured prices.
#[derive(Clone)]
pub struct Pricer {
    registry: std::sync::Arc<super::Registry>,
    config: std::sync::Arc<PricingConfig>,
}

/// A priced row: the cost (None when unpriced), how it was found and by which snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Priced {
    pub cost_usd: Option<f64>,
    pub source: PriceSource,
    pub note: String,
    pub registry_version: Option<String>,
}

impl Pricer {
    pub fn new(registry: std::sync::Arc<super::Registry>, config: PricingConfig) -> Self {
        Self {
            registry,
            config: std::sync::Arc::new(config),
        }
    }

    pub fn registry(&self) -> &std::sync::Arc<super::Registry> {
        &self.registry
    }

    /// Prices usage of `provider`'s model (`candidates`: sent id, then reported id).
    pub fn price(&self, provider: &str, candidates: &[&str], usage: &TokenCounts) -> Priced {
        let catalog = self.registry.snapshot();
        let m = find_price(&catalog, &self.config, provider, candidates);
        Priced {
            cost_usd: m.cost.as_ref().map(|c| cost_usd(c, usage)),
            source: m.source,
            note: m.note,
            registry_version: (!catalog.version.is_empty()).then(|| catalog.version.clone()),
        }
    }

    /// The prices that would apply, for reservations made before the call.
    pub fn prices(&self, provider: &str, candidates: &[&str]) -> Option<Cost> {
        find_price(
            &self.registry.snapshot(),
            &self.config,
            provider,
            candidates,
        )
        .cost
    }
}
