//! Per-key spending limits that concurrent requests cannot overrun. Before the upstream call a
//! request reserves the most it can cost (its prompt at the input price plus its token limit at the
//! output price); when its row is priced the reservation is settled to the real cost. Admission
//! checks `spent + reserved + this request <= budget` under one lock, so no interleaving of
//! concurrent requests can spend past the budget.
//!
//! Spend is persisted by the log writer (`api_keys.spent_usd`, in the same transaction as the
//! rows); a process starts each key's ledger from that value. This ledger is per process; with
//! `redis.url` every instance reserves in Redis instead (`reserve_shared`, `coordination`).

use crate::{
    domain::TokenCounts,
    registry::{Cost, pricing::cost_usd},
    store::KeyRecord,
};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

#[derive(Debug, Default)]
struct Ledger {
    spent: f64,
    reserved: f64,
}

#[derive(Debug, Default)]
pub struct Budgets {
    // A std mutex: held for a few arithmetic operations, never across an await.
    ledgers: Mutex<HashMap<i64, Ledger>>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "This API key's budget of ${budget:.2} is used up: ${spent:.4} spent and ${reserved:.4} reserved by requests in flight; this request could cost up to ${requested:.4}."
)]
pub struct BudgetExceeded {
    pub budget: f64,
    pub spent: f64,
    pub reserved: f64,
    pub requested: f64,
}

/// A reservation held by a request in flight; settle it with the real cost, or drop it to release.
pub struct Reservation {
    holder: Holder,
    settled: bool,
}

enum Holder {
    Local {
        budgets: Arc<Budgets>,
        key_id: i64,
        amount: f64,
    },
    /// In Redis, shared by every instance (`coordination`).
    Shared {
        coord: Arc<crate::coordination::Coordinator>,
        reservation: Arc<crate::coordination::SharedReservation>,
    },
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reservation")
    }
}

impl Budgets {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Reserves `max_cost` against the key's budget (keys without a budget always pass).
    pub fn reserve(
        self: &Arc<Self>,
        key: &KeyRecord,
        max_cost: f64,
    ) -> Result<Option<Reservation>, BudgetExceeded> {
        let Some(budget) = key.budget_usd else {
            return Ok(None);
        };
        let mut ledgers = self.ledgers.lock().unwrap_or_else(|e| e.into_inner());
        let l = ledgers.entry(key.id).or_insert_with(|| Ledger {
            spent: key.spent_usd,
            reserved: 0.0,
        });
        if l.spent + l.reserved + max_cost > budget {
            return Err(BudgetExceeded {
                budget,
                spent: l.spent,
                reserved: l.reserved,
                requested: max_cost,
            });
        }
        l.reserved += max_cost;
        Ok(Some(Reservation {
            holder: Holder::Local {
                budgets: self.clone(),
                key_id: key.id,
                amount: max_cost,
            },
            settled: false,
        }))
    }

    /// Reserves in Redis, for every instance at once. A Redis failure refuses budgeted requests
    /// (503) rather than risk spending past a budget no instance can see.
    pub async fn reserve_shared(
        coord: &Arc<crate::coordination::Coordinator>,
        key: &KeyRecord,
        max_cost: f64,
    ) -> Result<Option<Reservation>, crate::error::ApiError> {
        let Some(budget) = key.budget_usd else {
            return Ok(None);
        };
        match coord.reserve(key.id, budget, key.spent_usd, max_cost).await {
            Ok(crate::coordination::BudgetAnswer::Reserved(r)) => Ok(Some(Reservation {
                holder: Holder::Shared {
                    coord: coord.clone(),
                    reservation: Arc::new(r),
                },
                settled: false,
            })),
            Ok(crate::coordination::BudgetAnswer::Refused(spent, reserved)) => {
                Err(BudgetExceeded {
                    budget,
                    spent,
                    reserved,
                    requested: max_cost,
                }
                .into())
            }
            Err(e) => {
                tracing::error!(error = %e, "budget reservation failed");
                Err(crate::error::ApiError::Overloaded)
            }
        }
    }

    /// (spent, reserved) for a key, as this process sees it.
    pub fn usage(&self, key_id: i64) -> Option<(f64, f64)> {
        let ledgers = self.ledgers.lock().unwrap_or_else(|e| e.into_inner());
        ledgers.get(&key_id).map(|l| (l.spent, l.reserved))
    }

    fn release(&self, key_id: i64, amount: f64, spent: f64) {
        let mut ledgers = self.ledgers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = ledgers.get_mut(&key_id) {
            l.reserved = (l.reserved - amount).max(0.0);
            l.spent += spent;
        }
    }
}

impl Reservation {
    /// Replaces the reservation with the real cost.
    pub fn settle(mut self, actual: f64) {
        self.settled = true;
        self.finish(actual.max(0.0));
    }

    fn finish(&self, actual: f64) {
        match &self.holder {
            Holder::Local {
                budgets,
                key_id,
                amount,
            } => budgets.release(*key_id, *amount, actual),
            Holder::Shared { coord, reservation } => {
                let (coord, reservation) = (coord.clone(), reservation.clone());
                // Rows finish in synchronous code (a stream's drop): the call goes to the runtime.
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(async move {
                        if let Err(e) = coord.settle(&reservation, actual).await {
                            tracing::error!(error = %e, "could not settle a budget reservation");
                        }
                    });
                }
            }
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled {
            self.finish(0.0);
        }
    }
}

/// The most a request can cost: every prompt token at the input price (no cache discount) plus
/// `max_output` tokens at the dearer of the output and reasoning prices, at the highest tier.
pub fn max_cost(prices: &Cost, prompt_tokens: u64, max_output: u64) -> f64 {
    let mut worst = prices.clone();
    for t in &prices.tiers {
        worst.input = worst.input.max(t.prices.input.unwrap_or(0.0));
        worst.output = worst.output.max(t.prices.output.unwrap_or(0.0));
    }
    let out = worst.output.max(worst.reasoning.unwrap_or(0.0));
    let bound = Cost {
        input: worst.input,
        output: out,
        tiers: Vec::new(),
        context_over_200k: None,
        ..Default::default()
    };
    cost_usd(
        &bound,
        &TokenCounts {
            prompt: prompt_tokens,
            completion: max_output,
            ..Default::default()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(budget: Option<f64>, spent: f64) -> KeyRecord {
        KeyRecord {
            id: 1,
            name: "k".into(),
            prefix: "gg-".into(),
            models: None,
            rpm: None,
            tpm: None,
            budget_usd: budget,
            spent_usd: spent,
            expires_at: None,
            revoked_at: None,
            created_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn reservations_never_overrun() {
        let b = Budgets::new();
        let k = key(Some(1.0), 0.25);
        let r1 = b.reserve(&k, 0.5).unwrap().unwrap();
        assert!(b.reserve(&k, 0.5).is_err(), "0.25 + 0.5 + 0.5 > 1");
        r1.settle(0.1);
        assert_eq!(b.usage(1), Some((0.35, 0.0)));
        let r2 = b.reserve(&k, 0.6).unwrap().unwrap();
        drop(r2); // released, nothing spent
        assert_eq!(b.usage(1), Some((0.35, 0.0)));
        assert!(b.reserve(&key(None, 0.0), 1e9).unwrap().is_none());
    }

    #[test]
    fn max_cost_is_an_upper_bound() {
        let c = Cost {
            input: 1.0,
            output: 2.0,
            reasoning: Some(3.0),
            cache_read: Some(0.1),
            ..Default::default()
        };
        assert_eq!(max_cost(&c, 1_000_000, 1_000_000), 4.0);
    }
}
