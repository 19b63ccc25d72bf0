//! Metered keys' balances through the manager: read, set, top up, refill.

use std::collections::HashSet;

use super::{KeyManager, ManageError};

/// How many families a metering cascade walks at most: the bound only
/// keeps a corrupt store (a creation cycle) from looping.
const MAX_FAMILIES: usize = 100_000;
use crate::{
    AuditAction, BalanceChange, CreditBalance, CreditUpdate, Cursor, KeyId, KeyRecord, KeyUpdate,
    MAX_CREDITS, Page, StoreError,
};

impl KeyManager {
    /// The credit balance key `id` spends, as of now; `None` if the key is
    /// not metered. A key made by a metered key shares its creator's
    /// balance, and a rotated key its predecessor's.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] if there is no such key, or the bank's
    /// error.
    pub async fn credits(&self, id: KeyId) -> Result<Option<CreditBalance>, ManageError> {
        let record = self.store.find(id).await?.ok_or(StoreError::NotFound(id))?;
        let Some(account) = record.credit_account else {
            return Ok(None);
        };
        let balance = self.credits.balance(account, self.now()).await?;
        // A metered key whose account is gone spends nothing: it has none.
        Ok(Some(balance.unwrap_or(CreditBalance {
            remaining: 0,
            refill: None,
            next_refill: None,
        })))
    }

    /// Changes the balance key `id` spends, or how it refills, effective at
    /// once on layers sharing this manager's verifier: `CreditUpdate::set(n)`
    /// sets it, `CreditUpdate::add(n)` tops it up (a purchase), and
    /// [`CreditUpdate::with_refill`] changes the refill. A key that is not
    /// metered becomes metered, with an account of its own (its rotation
    /// family's) that starts from 0 before the change.
    ///
    /// An `admin`'s operation: a delegating key must never be able to
    /// call it for itself or its keys, or it could mint credits.
    ///
    /// ```
    /// # async fn demo(manager: keygate_core::KeyManager, id: keygate_core::KeyId)
    /// # -> Result<(), keygate_core::ManageError> {
    /// use keygate_core::{CreditUpdate, Refill};
    ///
    /// // A customer bought 5 000 more requests.
    /// let balance = manager.update_credits(id, CreditUpdate::add(5_000)).await?;
    /// println!("{} left", balance.remaining);
    /// // The free tier: 100 a day.
    /// let daily = Refill::daily(100).expect("in range");
    /// manager
    ///     .update_credits(id, CreditUpdate::default().with_refill(Some(daily)))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] if there is no such key,
    /// [`ManageError::CreditsOutOfRange`] for a balance or top-up above
    /// [`MAX_CREDITS`], or the store's or bank's error.
    pub async fn update_credits(
        &self,
        id: KeyId,
        update: CreditUpdate,
    ) -> Result<CreditBalance, ManageError> {
        if let Some(BalanceChange::Set(n) | BalanceChange::Add(n)) = update.balance
            && n > MAX_CREDITS
        {
            return Err(ManageError::CreditsOutOfRange);
        }
        let mut update = update;
        if let Some(Some(refill)) = update.refill {
            let refill = refill
                .checked()
                .map_err(|_| ManageError::CreditsOutOfRange)?;
            update.refill = Some(Some(refill));
        }
        let record = self.store.find(id).await?.ok_or(StoreError::NotFound(id))?;
        let now = self.now();
        let (account, metered_now) = match record.credit_account {
            Some(account) => (account, false),
            None => (record.family, true),
        };
        // The balance first, then the key: a key never spends an account
        // that is not there yet.
        let balance = self.credits.update(account, &update, now).await?;
        if metered_now {
            self.meter(&record, account).await?;
        }
        // Layers forget refusals they remember for this key: on this node
        // at once, on others as their invalidation feed delivers.
        self.invalidate(id);
        self.audit(AuditAction::Credits, id, Some(describe(&update)));
        Ok(balance)
    }

    /// Makes `record`'s key spend `account`, and with it every key that
    /// would otherwise be more powerful than it in this dimension: the
    /// other live keys of its rotation family (its successors, and its
    /// predecessors in their grace periods), and every key its family
    /// created, transitively, that is not revoked — including keys given
    /// credits of their own while their creator was not metered, which
    /// would otherwise keep a balance nobody limited. A delegated key is
    /// never less limited than its creator.
    async fn meter(&self, record: &KeyRecord, account: KeyId) -> Result<(), ManageError> {
        let now = self.now();
        let mut family = Vec::new();
        let mut page = Page::first(500);
        loop {
            let keys = self.store.list_by_owner(&record.owner, page).await?;
            family.extend(
                keys.iter()
                    .filter(|k| k.family == record.family && !k.is_revoked())
                    .filter(|k| k.id == record.id || !k.is_expired_at(now))
                    .map(|k| k.id),
            );
            match keys.last() {
                Some(last) if keys.len() == page.limit => page.cursor = Some(Cursor::after(last)),
                _ => break,
            }
        }
        for id in family {
            self.set_account(id, account, None).await?;
        }
        let mut families = vec![record.family];
        let mut walked = HashSet::new();
        while let Some(creator) = families.pop() {
            if !walked.insert(creator) || walked.len() > MAX_FAMILIES {
                continue;
            }
            for child in self.store.list_created_by(creator).await? {
                families.push(child.family);
                if child.is_revoked() || child.credit_account == Some(account) {
                    continue;
                }
                let why = format!("metered with its creator {creator}");
                self.set_account(child.id, account, Some(why)).await?;
            }
        }
        Ok(())
    }

    async fn set_account(
        &self,
        id: KeyId,
        account: KeyId,
        why: Option<String>,
    ) -> Result<(), ManageError> {
        let changes = KeyUpdate {
            credit_account: Some(Some(account)),
            ..KeyUpdate::default()
        };
        self.store.update(id, &changes).await?;
        self.invalidate(id);
        if why.is_some() {
            self.audit(AuditAction::Credits, id, why);
        }
        Ok(())
    }
}

/// The audit detail of a credit change: `set 20`, `add 100, refill 20/day`.
fn describe(update: &CreditUpdate) -> String {
    let mut parts = Vec::new();
    match update.balance {
        Some(BalanceChange::Set(n)) => parts.push(format!("set {n}")),
        Some(BalanceChange::Add(n)) => parts.push(format!("add {n}")),
        None => {}
    }
    match update.refill {
        Some(Some(refill)) => parts.push(format!("refill {refill}")),
        Some(None) => parts.push("no refill".to_owned()),
        None => {}
    }
    if parts.is_empty() {
        "no change".to_owned()
    } else {
        parts.join(", ")
    }
}
