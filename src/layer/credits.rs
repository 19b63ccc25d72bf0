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
pub(super) struct PendingCharge(Pending<Charged>);

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
    fn poll_with(&mut self, cx: &mut Context<'_>, lost: impl FnOnce() -> T) -> Poll<T> {
        match self {
            Self::Spawned(rx) => Pin::new(rx).poll(cx).map(|r| r.unwrap_or_else(|_| lost())),
            Self::Inline(f) => f.as_mut().poll(cx),
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
    let mut work: BoxFuture<'static, Charged> =
        Box::pin(async move { owned.charge(account, cost, now).await.map_err(Arc::new) });
    // Polled once here, with nobody to wake: a future that is not ready
    // is polled again, with a real waker, where it goes next.
    if let Poll::Ready(charged) = work.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        return Charging::Ready(charged);
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return Charging::Pending(PendingCharge(Pending::Inline(work)));
    };
    let bank = Arc::clone(bank);
    let (tx, rx) = oneshot::channel();
    runtime.spawn(async move {
        let charged = work.await;
        // The request is gone: give back what it paid for nothing.
        if let Err(Ok(Some(charge))) = tx.send(charged)
            && charge.admitted
        {
            give_back(&*bank, account, cost, charge.period).await;
        }
    });
    Charging::Pending(PendingCharge(Pending::Spawned(rx)))
}

impl Future for PendingCharge {
    type Output = Charged;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Charged> {
        self.0.poll_with(cx, || {
            // The runtime is shutting down under the task.
            Err(Arc::new(StoreError::unavailable(
                "the credit charge was cancelled",
            )))
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
        self.0.poll_with(cx, || ())
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
