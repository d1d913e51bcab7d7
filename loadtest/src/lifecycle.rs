//! The order's life in a load test (`--pay-ratio`): a share of the winners pay at once, the
//! rest let their payment window pass; their units come back on sale, and latecomers buy them
//! in the next round, whose own unpaid orders expire in turn, for up to `--resale-rounds`.
//! The checks then hold every order to the fate its payment's answer gave it
//! (`docs/architecture.md`, invariant 7): paid when the payment was answered 200, expired when
//! it was refused or never tried, and paid or expired when the answer could not tell (a 503,
//! or none): the payment may have been charged and recorded after all. Which of the two is
//! right is for the payment provider's record to say (invariant 8); the run counts them.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use shared::ids::OrderId;
use shared::order_status::OrderStatus;
use shared::poll;
use shared::sale::Sale;

use crate::Buyers;
use crate::api::{Answer, Gateway};
use crate::drive::{Holding, Outcome, Pacing};

/// Attempts each latecomer makes in a resale round.
const LATECOMER_ATTEMPTS: usize = 3;
/// When latecomers arrive after the units came back. A gateway answers from its sold-out flag
/// until the flag is 500 ms old, then asks the stock lock again (`docs/architecture.md`); a
/// round of a few hundred attempts takes milliseconds, so latecomers arriving at once could all
/// meet a flag still within those 500 ms.
const FLAG_LEARNS_WITHIN: Duration = Duration::from_secs(1);
/// Latecomers per unit back on sale.
const LATECOMERS_PER_UNIT: u64 = 3;
/// Longest wait, beyond the payment window, for the expiry sweep to return units.
const RETURN_GRACE: Duration = Duration::from_secs(30);

/// How the winners of a run behave after buying.
#[derive(Clone, Copy, Debug)]
pub struct Lifecycle {
    /// Share of the winners who pay (the others let the window pass).
    pub pay_ratio: f64,
    /// Rounds of latecomers buying the returned units after the first crowd.
    pub resale_rounds: usize,
}

/// One round of latecomers.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Round {
    /// Units back on sale when the round began.
    pub offered: u64,
    /// Latecomers in the round (three for each unit offered).
    pub buyers: u64,
    /// Holdings they got: buyers told of an order (202, or 409 with their order id).
    pub held: u64,
}

/// What an order must end as, by what its buyer did and was told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// The payment was answered 200.
    Paid,
    /// Nobody paid, or the payment was refused (409 `order_expired`, or another 4xx: nothing
    /// was charged).
    Expired,
    /// The payment's answer could not tell (a 5xx, or no answer): charged and recorded or not.
    PaidOrExpired,
}

impl Fate {
    /// What the gateway's answer to a payment (`None`: no answer came) makes of the order.
    pub fn of_payment(answer: Option<&Answer>) -> Self {
        match answer {
            Some(answer) if answer.status == 200 => Self::Paid,
            Some(answer) if answer.status < 500 => Self::Expired,
            _ => Self::PaidOrExpired,
        }
    }

    /// Whether an order that ended `status` met this fate.
    pub fn allows(self, status: OrderStatus) -> bool {
        match self {
            Self::Paid => status == OrderStatus::Paid,
            Self::Expired => status == OrderStatus::Expired,
            Self::PaidOrExpired => matches!(status, OrderStatus::Paid | OrderStatus::Expired),
        }
    }
}

/// What the winners did, round after round.
#[derive(Debug, Default)]
pub struct Fates {
    /// Each order's fate.
    pub of: HashMap<OrderId, Fate>,
    /// The rounds after the first crowd.
    pub rounds: Vec<Round>,
}

impl Fates {
    /// Orders bought in the resale rounds: units sold again.
    pub fn resold(&self) -> u64 {
        self.rounds.iter().map(|round| round.held).sum()
    }

    /// Orders with this fate.
    pub fn count(&self, fate: Fate) -> u64 {
        self.of.values().filter(|f| **f == fate).count() as u64
    }
}

impl Lifecycle {
    /// Whether the `index`-th winner pays: spread evenly, `pay_ratio` of them in all.
    fn pays(&self, index: usize) -> bool {
        let share = |n: usize| (n as f64 * self.pay_ratio).floor();
        share(index + 1) > share(index)
    }

    /// Pays for the share of `holdings` that pays, as their owners; records each order's
    /// fate in `fates`.
    pub async fn pay(
        &self,
        gateway: &Gateway,
        tokens: &[String],
        holdings: &[Holding],
        fates: &mut Fates,
    ) {
        let (payers, idlers): (Vec<_>, Vec<_>) = holdings
            .iter()
            .enumerate()
            .partition(|(index, _)| self.pays(*index));
        let paid: Vec<(OrderId, Fate)> = futures::stream::iter(payers)
            .map(|(_, holding)| async move {
                let answer = gateway.pay(&holding.order_id, &tokens[holding.user]).await;
                (
                    holding.order_id.clone(),
                    Fate::of_payment(answer.ok().as_ref()),
                )
            })
            .buffer_unordered(64)
            .collect()
            .await;
        fates.of.extend(paid);
        fates.of.extend(
            idlers
                .into_iter()
                .map(|(_, holding)| (holding.order_id.clone(), Fate::Expired)),
        );
    }
}

/// After the crowd bought (`outcome`): pays for a share of the orders, waits for the others
/// to expire, and sends latecomers for the units that came back, round after round; each
/// round's answers and orders are added to `outcome`. Returns every order's fate.
pub(crate) async fn live_on(
    lifecycle: Lifecycle,
    buyers: &mut Buyers<'_>,
    sale: &Sale,
    pacing: Pacing,
    outcome: &mut Outcome,
) -> anyhow::Result<Fates> {
    let gateway = buyers.first;
    let window = Duration::from_secs(u64::from(sale.payment_window_secs));
    let mut fates = Fates::default();
    let mut holdings = outcome.holdings.clone();
    for round in 0..=lifecycle.resale_rounds {
        lifecycle
            .pay(gateway, &buyers.tokens, &holdings, &mut fates)
            .await;
        eprintln!(
            "{} paid, {} unpaid, {} of unknown outcome so far; waiting for the window to pass and the units to return",
            fates.count(Fate::Paid),
            fates.count(Fate::Expired),
            fates.count(Fate::PaidOrExpired),
        );
        // Only the units of orders surely unpaid are sure to come back.
        let keeps = u64::from(sale.stock)
            .saturating_sub(fates.count(Fate::Paid) + fates.count(Fate::PaidOrExpired));
        let offered =
            wait_for_returns(gateway, sale.id.as_str(), keeps, window + RETURN_GRACE).await?;
        if round == lifecycle.resale_rounds || offered == 0 {
            break;
        }
        tokio::time::sleep(FLAG_LEARNS_WITHIN).await;
        let latecomers = buyers
            .join((offered * LATECOMERS_PER_UNIT) as usize)
            .await?;
        let plan: Vec<usize> = (0..LATECOMER_ATTEMPTS)
            .flat_map(|_| latecomers.clone())
            .collect();
        eprintln!(
            "resale round {}: {} latecomers for {offered} returned units",
            round + 1,
            latecomers.len()
        );
        let bought = buyers.attempt(plan, pacing).await?;
        fates.rounds.push(Round {
            offered,
            buyers: latecomers.len() as u64,
            held: bought.holdings.len() as u64,
        });
        holdings.clone_from(&bought.holdings);
        outcome.absorb(bought);
    }
    Ok(fates)
}

/// Waits until the sale's remaining stock reaches `expected_remaining` (every unit not kept by
/// a payment back on sale). Gives up after `timeout`; returns the remaining stock.
pub async fn wait_for_returns(
    gateway: &Gateway,
    sale_id: &str,
    expected_remaining: u64,
    timeout: Duration,
) -> anyhow::Result<u64> {
    let reached = poll::until(timeout, Duration::from_millis(250), async || match gateway
        .sale(sale_id)
        .await
    {
        Ok(sale) => (sale.remaining >= expected_remaining).then_some(Ok(sale.remaining)),
        Err(error) => Some(Err(error)),
    })
    .await;
    match reached {
        Some(remaining) => remaining,
        None => Ok(gateway.sale(sale_id).await?.remaining),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway::outcome::ErrorCode;

    #[test]
    fn the_paying_share_is_spread_evenly_and_exact() {
        let lifecycle = Lifecycle {
            pay_ratio: 0.7,
            resale_rounds: 0,
        };
        let payers: Vec<bool> = (0..10).map(|i| lifecycle.pays(i)).collect();
        assert_eq!(payers.iter().filter(|p| **p).count(), 7);
        assert_eq!(
            payers,
            [
                false, true, true, false, true, true, false, true, true, true
            ]
        );
        let nobody = Lifecycle {
            pay_ratio: 0.0,
            resale_rounds: 0,
        };
        assert!((0..100).all(|i| !nobody.pays(i)));
    }

    #[test]
    fn a_payment_answer_that_cannot_tell_lets_the_order_end_paid_or_expired() {
        let answer = |status, code| Answer {
            status,
            code,
            order_id: None,
        };
        assert_eq!(Fate::of_payment(Some(&answer(200, None))), Fate::Paid);
        let too_late = answer(409, Some(ErrorCode::OrderExpired));
        assert_eq!(Fate::of_payment(Some(&too_late)), Fate::Expired);
        let unavailable = answer(503, Some(ErrorCode::Unavailable));
        assert_eq!(Fate::of_payment(Some(&unavailable)), Fate::PaidOrExpired);
        assert_eq!(Fate::of_payment(None), Fate::PaidOrExpired);
    }

    #[test]
    fn an_order_meets_its_fate_only_in_the_statuses_the_fate_allows() {
        use OrderStatus::{Created, Expired, Paid};
        assert!(Fate::PaidOrExpired.allows(Paid) && Fate::PaidOrExpired.allows(Expired));
        assert!(!Fate::PaidOrExpired.allows(Created));
        assert!(
            !Fate::Expired.allows(Paid),
            "a refused payment must not end paid"
        );
        assert!(
            !Fate::Paid.allows(Expired),
            "an accepted payment must not end expired"
        );
    }
}
