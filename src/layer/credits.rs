//! Charging a metered key's credits, off the request's own future: the
//! bank's round trip runs in a task, so a request dropped while it is in
//! flight (a client that hangs up, a timeout further out) is refunded
//! instead of paying for an answer it never gets. A charge the request
//! holds is refunded the same way unless the request is admitted.

use std::{
    fmt,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, Waker},
};

use keygate_core::{BoxFuture, Charge, CreditBank, KeyId, StoreError};
use time::OffsetDateTime;
use tokio::sync::oneshot;

/// What a charge answered: the charge, `None` for an account that does not
/// exist, or the bank's error.
pub(super) type Charged = Result<Option<Charge>, Arc<StoreError>>;

/// Credits an admitted request paid: for its `X-Credits-Remaining`
/// header, for handlers ([`ApiKey::credits_remaining`](crate::ApiKey::credits_remaining)),
/// and for a refund if the request is refused after all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Spent {
    pub(crate) account: KeyId,
    pub(crate) cost: u64,
    pub(crate) remaining: u64,
    pub(crate) period: Option<OffsetDateTime>,
}

/// A charge on its way.
pub(super) struct PendingCharge(Pending<Delivery>);

/// A charge the task hands to its request: given back when dropped
/// untaken, wherever that happens — the request gone before the task
/// answered, or after, with the answer still in the channel.
struct Delivery {
    charged: Option<Charged>,
    bank: Arc<dyn CreditBank>,
    account: KeyId,
    cost: u64,
}

impl Delivery {
    /// The charge, for the request that waited for it: it stands.
    fn take(mut self) -> Charged {
        self.charged.take().unwrap_or_else(|| {
            Err(Arc::new(StoreError::unavailable(
                "the credit charge was already taken",
            )))
        })
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if let Some(Ok(Some(charge))) = self.charged.take()
            && charge.admitted
        {
            let spent = Spent {
                account: self.account,
                cost: self.cost,
                remaining: charge.remaining,
                period: charge.period,
            };
            // A guard dropped at once: it refunds in a task.
            drop(ChargeGuard::new(&self.bank, spent));
        }
    }
}

/// A refund on its way.
pub(super) struct PendingRefund(Pending<()>);

enum Pending<T> {
    /// In a task: it finishes (and refunds what nobody received) whatever
    /// happens to the request.
    Spawned(oneshot::Receiver<T>),
    /// Outside a tokio runtime there is no task to hand it to.
    Inline(BoxFuture<'static, T>),
}

impl<T> Pending<T> {
    fn poll_with(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        match self {
            Self::Spawned(rx) => Pin::new(rx).poll(cx).map(Result::ok),
            Self::Inline(f) => f.as_mut().poll(cx).map(Some),
        }
    }
}

/// A charge: answered at once (an in-process bank), or on its way.
pub(super) enum Charging {
    Ready(Charged),
    Pending(PendingCharge),
}

/// Charges `cost` credits to `account` at `now`. A bank that answers
/// without waiting (the memory store) answers here, with no task; one that
/// must wait continues in a task.
pub(super) fn charge(
    bank: &Arc<dyn CreditBank>,
    account: KeyId,
    cost: u64,
    now: OffsetDateTime,
) -> Charging {
    let owned = Arc::clone(bank);
    let deliver = Arc::clone(bank);
    let mut work: BoxFuture<'static, Delivery> = Box::pin(async move {
        let charged = owned.charge(account, cost, now).await.map_err(Arc::new);
        Delivery {
            charged: Some(charged),
            bank: deliver,
            account,
            cost,
        }
    });
    // Polled once here, with nobody to wake: a future that is not ready
    // is polled again, with a real waker, where it goes next.
    if let Poll::Ready(delivery) = work.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        return Charging::Ready(delivery.take());
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return Charging::Pending(PendingCharge(Pending::Inline(work)));
    };
    let (tx, rx) = oneshot::channel();
    runtime.spawn(async move {
        // Nobody to send it to: dropped here, it gives back what it took.
        let _ = tx.send(work.await);
    });
    Charging::Pending(PendingCharge(Pending::Spawned(rx)))
}

impl Future for PendingCharge {
    type Output = Charged;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Charged> {
        self.0.poll_with(cx).map(|delivery| match delivery {
            Some(delivery) => delivery.take(),
            // The runtime is shutting down under the task.
            None => Err(Arc::new(StoreError::unavailable(
                "the credit charge was cancelled",
            ))),
        })
    }
}

/// Gives back what `spent` paid, for a request refused after its charge.
pub(super) fn refund(bank: &Arc<dyn CreditBank>, spent: Spent) -> PendingRefund {
    let bank = Arc::clone(bank);
    let work = async move { give_back(&*bank, spent.account, spent.cost, spent.period).await };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            let (tx, rx) = oneshot::channel();
            runtime.spawn(async move {
                work.await;
                let _ = tx.send(());
            });
            PendingRefund(Pending::Spawned(rx))
        }
        Err(_) => PendingRefund(Pending::Inline(Box::pin(work))),
    }
}

impl Future for PendingRefund {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.poll_with(cx).map(|_| ())
    }
}

async fn give_back(
    bank: &dyn CreditBank,
    account: KeyId,
    cost: u64,
    period: Option<OffsetDateTime>,
) {
    if let Err(e) = bank.refund(account, cost, period).await {
        // Lost credits, never free ones: the key paid for a request it did
        // not get. Logged so an operator can top the account up.
        tracing::error!(
            target: "keygate::credits",
            account = account.as_str(),
            cost,
            error = %e,
            "a refused request's credits could not be given back"
        );
    }
}

/// A charge a request holds until it is admitted: dropped unadmitted (the
/// request cancelled while a remote limiter answers, say), it is refunded
/// in a task.
pub(super) struct ChargeGuard {
    bank: Arc<dyn CreditBank>,
    spent: Option<Spent>,
}

impl ChargeGuard {
    pub(super) fn new(bank: &Arc<dyn CreditBank>, spent: Spent) -> Self {
        Self {
            bank: Arc::clone(bank),
            spent: Some(spent),
        }
    }

    /// The request was admitted: the charge stands.
    pub(super) fn keep(mut self) -> Option<Spent> {
        self.spent.take()
    }

    /// The request was refused: the refund, to wait for before answering.
    pub(super) fn give_back(mut self) -> Option<PendingRefund> {
        self.spent.take().map(|spent| refund(&self.bank, spent))
    }
}

impl Drop for ChargeGuard {
    fn drop(&mut self) {
        if let Some(spent) = self.spent.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    let bank = Arc::clone(&self.bank);
                    runtime.spawn(async move {
                        give_back(&*bank, spent.account, spent.cost, spent.period).await;
                    });
                }
                Err(_) => tracing::error!(
                    target: "keygate::credits",
                    account = spent.account.as_str(),
                    cost = spent.cost,
                    "a cancelled request's credits could not be given back outside a tokio runtime"
                ),
            }
        }
    }
}

impl fmt::Debug for ChargeGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChargeGuard")
            .field("spent", &self.spent)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    };

    use keygate_core::{CreditBalance, CreditUpdate};
    use tokio::sync::Notify;

    use super::*;

    /// A bank that answers a charge when told to, and counts refunds.
    #[derive(Debug, Default)]
    struct Gated {
        open: Notify,
        charged: AtomicU64,
        refunded: AtomicU64,
        answered: Mutex<bool>,
    }

    impl CreditBank for Gated {
        fn charge(
            &self,
            _: KeyId,
            cost: u64,
            _: OffsetDateTime,
        ) -> BoxFuture<'_, Result<Option<Charge>, StoreError>> {
            Box::pin(async move {
                self.open.notified().await;
                self.charged.fetch_add(cost, Ordering::SeqCst);
                *self.answered.lock().unwrap() = true;
                Ok(Some(Charge {
                    admitted: true,
                    remaining: 0,
                    next_refill: None,
                    period: None,
                }))
            })
        }

        fn refund(
            &self,
            _: KeyId,
            cost: u64,
            _: Option<OffsetDateTime>,
        ) -> BoxFuture<'_, Result<(), StoreError>> {
            self.refunded.fetch_add(cost, Ordering::SeqCst);
            Box::pin(async { Ok(()) })
        }

        fn balance(
            &self,
            _: KeyId,
            _: OffsetDateTime,
        ) -> BoxFuture<'_, Result<Option<CreditBalance>, StoreError>> {
            Box::pin(async { Ok(None) })
        }

        fn update<'a>(
            &'a self,
            _: KeyId,
            _: &'a CreditUpdate,
            _: OffsetDateTime,
        ) -> BoxFuture<'a, Result<CreditBalance, StoreError>> {
            unreachable!("not used here")
        }
    }

    async fn settle(bank: &Gated, charged: u64, refunded: u64) {
        for _ in 0..200 {
            if bank.charged.load(Ordering::SeqCst) == charged
                && bank.refunded.load(Ordering::SeqCst) == refunded
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!(
            "charged {}, refunded {}; wanted {charged}, {refunded}",
            bank.charged.load(Ordering::SeqCst),
            bank.refunded.load(Ordering::SeqCst)
        );
    }

    fn pending(bank: &Arc<dyn CreditBank>, cost: u64) -> PendingCharge {
        let account = "Account001".parse().unwrap();
        match charge(bank, account, cost, OffsetDateTime::UNIX_EPOCH) {
            Charging::Pending(p) => p,
            Charging::Ready(_) => panic!("the gated bank cannot answer at once"),
        }
    }

    #[tokio::test]
    async fn a_charge_nobody_takes_is_given_back_before_or_after_it_answers() {
        let gated = Arc::new(Gated::default());
        let bank: Arc<dyn CreditBank> = gated.clone();
        // Dropped before the bank answers.
        let early = pending(&bank, 3);
        drop(early);
        gated.open.notify_one();
        settle(&gated, 3, 3).await;
        // Dropped after the answer reached the channel, before it was read.
        let late = pending(&bank, 5);
        gated.open.notify_one();
        while !*gated.answered.lock().unwrap() || gated.charged.load(Ordering::SeqCst) < 8 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        drop(late);
        settle(&gated, 8, 8).await;
        // Taken by the request: it stands.
        let taken = pending(&bank, 7);
        gated.open.notify_one();
        let charge = taken.await.unwrap().unwrap();
        assert!(charge.admitted);
        settle(&gated, 15, 8).await;
    }
}
