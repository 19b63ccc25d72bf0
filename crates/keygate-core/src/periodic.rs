//! Background work that runs on a timer for as long as its owner lives.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

/// Runs `tick` on `owner` every `period`, the first time one period from
/// now, until `owner` is dropped. A tick that overruns delays the next one
/// rather than bunching the missed ones up.
///
/// Holds only a [`Weak`] between ticks, so the task never keeps its owner
/// alive.
pub(crate) async fn every<T, F, Fut>(owner: Weak<T>, period: Duration, mut tick: F)
where
    T: ?Sized,
    F: FnMut(Arc<T>) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        interval.tick().await;
        let Some(owner) = owner.upgrade() else { break };
        tick(owner).await;
    }
}
