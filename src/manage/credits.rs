//! The routes of `/keys/{id}/credits`: read a key's credits (whoever may
//! read the key), and set or top them up (an `admin` only).

use axum::{body::Bytes, extract::rejection::BytesRejection};
use http::StatusCode;
use keygate_core::{CreditUpdate, CreditsView, MAX_CREDITS, ManageError};

use super::{
    caller::Caller,
    id_param::KeyIdParam,
    input::{self, UpdateCreditsRequest},
    keys::{Answer, read},
    schema::CreditsSchema,
    view::{Problem, ProblemBody, json},
};

/// Get the credits a key spends.
///
/// The balance as of now, any refill that is due applied. A key made by a
/// metered `keys:manage` key spends its creator's account, so it answers
/// that balance, shared with its creator (see `account`); a rotated key
/// keeps its predecessor's. A key that is not metered answers
/// `"metered": false`.
#[utoipa::path(
    get,
    path = "/keys/{id}/credits",
    tag = "keys",
    params(KeyIdParam),
    responses(
        (status = 200, description = "The key's credits", body = CreditsSchema),
        (status = 404, description = "`not_found`: no such key, or another owner's; `revoked`: the key was revoked, and `key` holds its record", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub(super) async fn get_credits(caller: Caller, KeyIdParam(id): KeyIdParam) -> Answer {
    let record = caller.load_live(&id).await?;
    let balance = caller
        .manager()
        .credits(record.id)
        .await
        .map_err(|e| caller.failed(e))?;
    // A key metered between the two reads spends its own family's account:
    // the one `update_credits` opens.
    let account = record
        .credit_account
        .or_else(|| balance.is_some().then_some(record.family));
    Ok(json(StatusCode::OK, &CreditsView::new(account, balance)))
}

/// Set or top up a key's credits, or change how they refill.
///
/// `admin` keys (and operators) only: a `keys:manage` key or a signed-in
/// person gets 403 `insufficient_scope`, for its own keys too, since it
/// could otherwise give itself credits. Exactly one of `set` and `add`,
/// and/or `refill` (`null` removes it). A key that is not metered becomes
/// metered, with an account of its own starting from 0 before the change
/// (except for `{"refill": null}` alone, which leaves it as it is); a key
/// that is not metered and was rotated away is a 409 `superseded`: meter
/// its successor.
/// A key that spends its creator's account changes that account, shared by
/// every key spending it. Effective at once; recorded in the audit trail
/// (action `credits`).
#[utoipa::path(
    patch,
    path = "/keys/{id}/credits",
    tag = "keys",
    params(KeyIdParam),
    request_body = UpdateCreditsRequest,
    responses(
        (status = 200, description = "The key's credits after the change", body = CreditsSchema),
        (status = 403, description = "`insufficient_scope` (`required_scope`: `admin`): only an `admin` key or an operator changes credits", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: a body not sent as `application/json`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such key, or another owner's; `revoked`: the key was revoked, and `key` holds its record", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "`superseded`: the key is not metered and was rotated away; meter its newest successor (`superseded_by`) instead", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub(super) async fn update_credits(
    caller: Caller,
    KeyIdParam(id): KeyIdParam,
    raw: Result<Bytes, BytesRejection>,
) -> Answer {
    // Before the body or the key is read: a caller that may never change
    // credits learns nothing from the answer.
    caller.may_change_credits()?;
    let req = read(raw, input::update_credits)?;
    let record = caller.load_live(&id).await?;
    // Only `"refill": null` on a key that is not metered: it has no refill
    // to remove, and the change must not meter it with no credits at all
    // (refused on its next request). Nothing to do.
    if record.credit_account.is_none()
        && req.set.is_none()
        && req.add.is_none()
        && req.refill == Some(None)
    {
        return Ok(json(StatusCode::OK, &CreditsView::new(None, None)));
    }
    // Metering is asked of the key in use: one rotated away and not
    // metered is refused, so the caller names its successor (metering
    // reaches the whole family and the keys it made either way).
    if let (None, Some(successor)) = (record.credit_account, record.superseded_by) {
        return Err(Problem::superseded(successor.as_str()));
    }
    let account = record.credit_account.unwrap_or(record.family);
    let update = CreditUpdate::from(&req);
    match caller.manager().update_credits(record.id, update).await {
        Ok(balance) => Ok(json(
            StatusCode::OK,
            &CreditsView::new(Some(account), Some(balance)),
        )),
        Err(ManageError::CreditsOutOfRange) => {
            let field = if req.add.is_some() { "add" } else { "set" };
            Err(Problem::invalid_field(
                field,
                format!("a credit balance is 0 to {MAX_CREDITS} credits"),
            ))
        }
        Err(e) => Err(caller.failed(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::input::update_credits;

    fn fields(body: &str) -> Vec<String> {
        update_credits(body.as_bytes())
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn a_credits_body_changes_something_and_one_balance_at_most() {
        assert_eq!(fields("{}"), ["body"]);
        assert_eq!(fields(""), ["body"]);
        assert_eq!(fields(r#"{"set":1,"add":2}"#), ["add"]);
        assert_eq!(fields(r#"{"set":null}"#), ["set"]);
        assert_eq!(fields(r#"{"add":-1}"#), ["add"]);
        assert_eq!(fields(r#"{"set":1.5}"#), ["set"]);
        assert_eq!(fields(r#"{"set":"5"}"#), ["set"]);
        assert_eq!(fields(r#"{"set":1000000000000001}"#), ["set"]);
        assert_eq!(fields(r#"{"set":1,"account":"x"}"#), ["account"]);
        assert_eq!(
            fields(r#"{"refill":{"amount":0,"interval":"week","extra":1}}"#),
            ["refill.amount", "refill.interval", "refill.extra"]
        );
        assert_eq!(fields(r#"{"refill":"20/day"}"#), ["refill"]);
        assert_eq!(
            fields(r#"{"refill":{}}"#),
            ["refill.amount", "refill.interval"]
        );
        let req = update_credits(br#"{"set":1e3,"refill":null}"#).unwrap();
        assert_eq!((req.set, req.refill), (Some(1000), Some(None)));
        let req = update_credits(br#"{"add":7,"refill":{"amount":20,"interval":"6h"}}"#).unwrap();
        assert_eq!(req.add, Some(7));
        assert_eq!(req.refill.unwrap().unwrap().to_string(), "20/6h");
    }

    #[test]
    fn refill_intervals_are_read_exactly() {
        let ok = |i: &str| {
            let body = format!(r#"{{"refill":{{"amount":1,"interval":"{i}"}}}}"#);
            update_credits(body.as_bytes()).is_ok()
        };
        for good in [
            "day",
            "daily",
            "month",
            "monthly",
            "1s",
            "31622400s",
            "527040min",
            "8784h",
            "366d",
            "7d",
            "24h",
            "90s",
            "15min",
        ] {
            assert!(ok(good), "{good}");
        }
        for bad in [
            "week",
            "0d",
            "06h",
            "367d",
            "8785h",
            "527041min",
            "31622401s",
            " day",
            "day ",
            "6H",
            "6 h",
            "+6h",
            "-6h",
            "6hh",
            "",
            "h",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert!(!ok(bad), "{bad}");
        }
    }
}
