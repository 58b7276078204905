//! `GET /api/models`: the models the gateway can serve now (every available provider's registry
//! catalog plus its configured `models`), each with the price the gateway would charge (the same
//! matching as the request log: override, exact, stripped suffix, alias), and the configured
//! price overrides and aliases.

use super::ApiFailure;
use crate::{
    registry::pricing::{PriceOverride, find_price},
    server::SharedState,
    store::format_time,
};
use axum::{Json, extract::State};
use serde::Serialize;
use std::collections::BTreeMap;

/// Prices in USD per million tokens; null when the model has no price (or no such price).
#[derive(Debug, Serialize)]
pub struct ModelItem {
    pub provider: String,
    pub id: String,
    /// The registry's display name, when listed there.
    pub name: Option<String>,
    pub input: Option<f64>,
    pub output: Option<f64>,
    pub cache_read: Option<f64>,
    pub cache_write: Option<f64>,
    /// Price of reasoning tokens when it differs from `output`.
    pub reasoning: Option<f64>,
    /// Context window and most output tokens, from the registry.
    pub context: Option<u64>,
    pub max_output: Option<u64>,
    /// A bare id (`gpt-4o`) reaches this provider; otherwise only `provider/id` does.
    pub routes_bare: bool,
    /// How the price was found: `override`, `exact`, `stripped`, `alias` or `none`.
    pub price_source: &'static str,
    /// What matched (`openai/gpt-4o`), or why nothing did.
    pub price_note: String,
}

#[derive(Debug, Serialize)]
pub struct ModelsReport {
    /// The registry snapshot in use (null before the first load).
    pub registry_version: Option<String>,
    pub loaded_at: Option<String>,
    pub items: Vec<ModelItem>,
    pub overrides: BTreeMap<String, PriceOverride>,
    pub aliases: BTreeMap<String, String>,
}

pub async fn list(State(state): State<SharedState>) -> Result<Json<ModelsReport>, ApiFailure> {
    let catalog = state.registry.snapshot();
    let providers = state.providers.load();
    let pricing = &state.config.pricing;
    let mut items = Vec::new();
    for entry in providers.entries().filter(|e| e.adapter.is_some()) {
        let provider = &entry.settings.name;
        let mut ids: Vec<&str> = catalog.models(provider).map(|m| m.id.as_str()).collect();
        ids.extend(entry.settings.models.iter().map(String::as_str));
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            let info = catalog.model(provider, id);
            let price = find_price(&catalog, pricing, provider, &[id]);
            let cost = price.cost.as_ref();
            let routes_bare = providers
                .resolve(id, |m| catalog.provider_of(m).map(str::to_string))
                .is_ok_and(|r| r.provider.name() == provider);
            items.push(ModelItem {
                provider: provider.clone(),
                id: id.to_string(),
                name: info.and_then(|m| m.name.clone()),
                input: cost.map(|c| c.input),
                output: cost.map(|c| c.output),
                cache_read: cost.and_then(|c| c.cache_read),
                cache_write: cost.and_then(|c| c.cache_write),
                reasoning: cost.and_then(|c| c.reasoning),
                context: info.and_then(|m| m.limit).and_then(|l| l.context),
                max_output: info.and_then(|m| m.limit).and_then(|l| l.output),
                routes_bare,
                price_source: price.source.as_str(),
                price_note: price.note,
            });
        }
    }
    items.sort_by(|a, b| (&a.provider, &a.id).cmp(&(&b.provider, &b.id)));
    Ok(Json(ModelsReport {
        registry_version: (!catalog.version.is_empty()).then(|| catalog.version.clone()),
        loaded_at: catalog.loaded_at.map(format_time),
        items,
        overrides: pricing.overrides.clone(),
        aliases: pricing.aliases.clone(),
    }))
}
