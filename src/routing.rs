//! Which provider serves a model id: a configured route name stands for its targets; `provider/model`
//! names one; a bare id goes to the provider whose catalog lists it (configured `models`, then the
//! registry), else by well-known prefix.

use crate::{
    config::{ProviderKind, ProviderSettings, RouteConfig, RouteStrategy},
    providers::Provider,
};
use rand::Rng;
use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

pub struct ProviderEntry {
    pub settings: ProviderSettings,
    /// `None` when the provider is known but not usable (no key, disabled, no adapter).
    pub adapter: Option<Arc<dyn Provider>>,
    pub unavailable_reason: Option<String>,
    /// Where `settings.api_key` came from.
    pub key_source: KeySource,
}

/// Where a provider's key came from: the configuration (file or environment, which wins), the
/// database (set from the dashboard, stored encrypted), or nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    Config,
    Database,
    None,
}

impl KeySource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Database => "database",
            Self::None => "none",
        }
    }
}

pub struct Router {
    providers: HashMap<String, ProviderEntry>,
    /// Bare model id → provider name, from configured model lists.
    configured: HashMap<String, String>,
    routes: BTreeMap<String, RouteConfig>,
}

#[derive(Clone)]
pub struct Route {
    pub provider: Arc<dyn Provider>,
    pub upstream_model: String,
}

impl Route {
    /// `provider/model`: how attempts, circuit breakers and the dashboard name a target.
    pub fn label(&self) -> String {
        format!("{}/{}", self.provider.name(), self.upstream_model)
    }
}

/// The targets one request may try, in order, and how often each may be retried.
pub struct Plan {
    pub targets: Vec<Route>,
    /// Retries per target; `None` uses `retry.max_retries`.
    pub retries: Option<u32>,
    /// Targets of the route that could not be used at all (no key, disabled): `(label, reason)`.
    pub skipped: Vec<(String, String)>,
}

#[derive(Debug, PartialEq)]
pub enum RouteError {
    UnknownModel,
    /// The model belongs to a provider that cannot be used; the reason says why.
    Unavailable(String),
}

/// Bare-id prefixes of the built-in providers, checked in order.
const PREFIXES: &[(&str, &str)] = &[
    ("gpt-", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("chatgpt-", "openai"),
    ("text-embedding-", "openai"),
    ("gemini-", "gemini"),
    ("deepseek-", "deepseek"),
    ("grok-", "xai"),
];

impl Router {
    pub fn new(entries: Vec<ProviderEntry>, routes: BTreeMap<String, RouteConfig>) -> Self {
        let mut configured = HashMap::new();
        for e in &entries {
            for m in &e.settings.models {
                configured
                    .entry(m.clone())
                    .or_insert_with(|| e.settings.name.clone());
            }
        }
        Self {
            providers: entries
                .into_iter()
                .map(|e| (e.settings.name.clone(), e))
                .collect(),
            configured,
            routes,
        }
    }

    /// The configured routes (listed by `/v1/models` as models of their own).
    pub fn routes(&self) -> &BTreeMap<String, RouteConfig> {
        &self.routes
    }

    /// Every target a request for `model` may try: a route's targets (weighted ones drawn in a
    /// random order by weight), else the one provider the model resolves to.
    pub fn plan(
        &self,
        model: &str,
        catalog: impl Fn(&str) -> Option<String>,
    ) -> Result<Plan, RouteError> {
        let Some(route) = self.routes.get(model) else {
            return Ok(Plan {
                targets: vec![self.resolve(model, catalog)?],
                retries: None,
                skipped: Vec::new(),
            });
        };
        let order = match route.strategy {
            RouteStrategy::Fallback => (0..route.targets.len()).collect(),
            RouteStrategy::Weighted => weighted_order(
                &route.targets.iter().map(|t| t.weight()).collect::<Vec<_>>(),
                &mut rand::thread_rng(),
            ),
        };
        let mut plan = Plan {
            targets: Vec::new(),
            retries: route.retries,
            skipped: Vec::new(),
        };
        for i in order {
            let target = route.targets[i].model();
            match self.resolve(target, &catalog) {
                Ok(r) => plan.targets.push(r),
                Err(RouteError::Unavailable(reason)) => {
                    plan.skipped.push((target.to_string(), reason))
                }
                Err(RouteError::UnknownModel) => plan
                    .skipped
                    .push((target.to_string(), "unknown provider".into())),
            }
        }
        if plan.targets.is_empty() {
            let reasons: Vec<String> = plan.skipped.iter().map(|(_, r)| r.clone()).collect();
            return Err(RouteError::Unavailable(format!(
                "No target of the route '{model}' is available: {}",
                reasons.join(" ")
            )));
        }
        Ok(plan)
    }

    pub fn entries(&self) -> impl Iterator<Item = &ProviderEntry> {
        self.providers.values()
    }

    pub fn get(&self, name: &str) -> Option<&ProviderEntry> {
        self.providers.get(name)
    }

    /// `catalog` answers "which provider's registry catalog lists this bare id", when known.
    pub fn resolve(
        &self,
        model: &str,
        catalog: impl Fn(&str) -> Option<String>,
    ) -> Result<Route, RouteError> {
        self.resolve_with(model, &catalog)
    }

    fn resolve_with(
        &self,
        model: &str,
        catalog: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Route, RouteError> {
        if let Some((prefix, rest)) = model.split_once('/')
            && !rest.is_empty()
            && let Some(entry) = self.providers.get(prefix)
        {
            return Self::use_entry(entry, rest);
        }
        let provider = self
            .configured
            .get(model)
            .cloned()
            .or_else(|| catalog(model).filter(|p| self.providers.contains_key(p)))
            .or_else(|| {
                PREFIXES
                    .iter()
                    .find(|(p, _)| model.starts_with(p))
                    .map(|(_, name)| name.to_string())
            })
            .ok_or(RouteError::UnknownModel)?;
        let entry = self
            .providers
            .get(&provider)
            .ok_or(RouteError::UnknownModel)?;
        Self::use_entry(entry, model)
    }

    fn use_entry(entry: &ProviderEntry, model: &str) -> Result<Route, RouteError> {
        match &entry.adapter {
            Some(p) => Ok(Route {
                provider: p.clone(),
                upstream_model: model.to_string(),
            }),
            None => Err(RouteError::Unavailable(
                entry.unavailable_reason.clone().unwrap_or_else(|| {
                    format!("provider '{}' is not available", entry.settings.name)
                }),
            )),
        }
    }
}

/// Indices `0..weights.len()` in a random order where each draw picks a remaining index with
/// probability proportional to its weight (sampling without replacement).
pub fn weighted_order(weights: &[u32], rng: &mut impl Rng) -> Vec<usize> {
    let mut left: Vec<usize> = (0..weights.len()).collect();
    let mut out = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let total: u64 = left.iter().map(|&i| u64::from(weights[i])).sum();
        let mut pick = rng.gen_range(0..total.max(1));
        let mut chosen = 0;
        for (pos, &i) in left.iter().enumerate() {
            let w = u64::from(weights[i]);
            if pick < w {
                chosen = pos;
                break;
            }
            pick -= w;
        }
        out.push(left.remove(chosen));
    }
    out
}

/// Why a provider cannot be used, or `None` when it can.
pub fn unavailable_reason(s: &ProviderSettings, has_adapter: bool) -> Option<String> {
    if !s.enabled {
        return Some(format!(
            "The provider '{}' is disabled in the configuration.",
            s.name
        ));
    }
    if !has_adapter {
        return Some(format!(
            "The provider '{}' (kind {}) is not supported by this build yet.",
            s.name,
            s.kind.as_str()
        ));
    }
    if s.api_key.is_none() && s.kind != ProviderKind::OpenaiCompatible {
        let hint = crate::config::BUILTIN_PROVIDERS
            .iter()
            .find(|b| b.0 == s.name)
            .map(|b| format!(" (set {} or providers.{}.api_key)", b.2[0], s.name))
            .unwrap_or_else(|| format!(" (set providers.{}.api_key)", s.name));
        return Some(format!(
            "The provider '{}' has no API key configured{hint}.",
            s.name
        ));
    }
    None
}
