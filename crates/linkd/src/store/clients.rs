//! The apps registered to link devices (`linkd client ...`).

use super::db::{Db, q};
use super::{Client, ClientChanges, StoreResult};

/// One app by id; also what the SQLite hot-path readers run.
pub(crate) const BY_ID: &str = "SELECT * FROM clients WHERE client_id = $1";

pub(super) async fn insert(db: &Db, c: &Client) -> StoreResult<()> {
    db.execute(q(
        "INSERT INTO clients (client_id, name, secret_hash, scopes, device_flow_enabled,
             redirect_uris, code_flow_enabled, refresh_enabled, created_at, require_dpop,
             prefilled_links, same_network_v4, same_network_v6)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        &[
            (&c.client_id).into(),
            (&c.name).into(),
            (&c.secret_hash).into(),
            (&c.scopes).into(),
            c.device_flow_enabled.into(),
            (&c.redirect_uris).into(),
            c.code_flow_enabled.into(),
            c.refresh_enabled.into(),
            c.created_at.into(),
            c.require_dpop.into(),
            c.prefilled_links.into(),
            c.same_network.map(|n| i64::from(n.v4)).into(),
            c.same_network.map(|n| i64::from(n.v6)).into(),
        ],
    ))
    .await?;
    Ok(())
}

pub(super) async fn get(db: &Db, client_id: &str) -> StoreResult<Option<Client>> {
    if let Some(direct) = db.direct() {
        return direct.read(|reader| Ok(reader.client(client_id)?.map(|c| (*c).clone())));
    }
    db.fetch_optional(q(BY_ID, &[client_id.into()])).await
}

pub(super) async fn list(db: &Db) -> StoreResult<Vec<Client>> {
    db.fetch_all(q("SELECT * FROM clients ORDER BY client_id", &[]))
        .await
}

pub(super) async fn update(
    db: &Db,
    client_id: &str,
    changes: &ClientChanges<'_>,
) -> StoreResult<bool> {
    let done = db
        .execute(q(
            "UPDATE clients SET scopes = COALESCE($1, scopes),
                 device_flow_enabled = COALESCE($2, device_flow_enabled),
                 code_flow_enabled = COALESCE($3, code_flow_enabled),
                 refresh_enabled = COALESCE($4, refresh_enabled),
                 redirect_uris = COALESCE($5, redirect_uris),
                 require_dpop = COALESCE($7, require_dpop),
                 prefilled_links = COALESCE($8, prefilled_links),
                 same_network_v4 = CASE WHEN $9 THEN $10 ELSE same_network_v4 END,
                 same_network_v6 = CASE WHEN $9 THEN $11 ELSE same_network_v6 END
             WHERE client_id = $6",
            &[
                changes.scopes.into(),
                changes.device_flow_enabled.into(),
                changes.code_flow_enabled.into(),
                changes.refresh_enabled.into(),
                changes.redirect_uris.into(),
                client_id.into(),
                changes.require_dpop.into(),
                changes.prefilled_links.into(),
                changes.same_network.is_some().into(),
                changes
                    .same_network
                    .flatten()
                    .map(|n| i64::from(n.v4))
                    .into(),
                changes
                    .same_network
                    .flatten()
                    .map(|n| i64::from(n.v6))
                    .into(),
            ],
        ))
        .await?;
    Ok(done == 1)
}

pub(super) async fn set_secret(db: &Db, client_id: &str, secret_hash: &str) -> StoreResult<bool> {
    let done = db
        .execute(q(
            "UPDATE clients SET secret_hash = $1 WHERE client_id = $2",
            &[secret_hash.into(), client_id.into()],
        ))
        .await?;
    Ok(done == 1)
}

pub(super) async fn delete(db: &Db, client_id: &str) -> StoreResult<bool> {
    let done = db
        .execute(q(
            "DELETE FROM clients WHERE client_id = $1",
            &[client_id.into()],
        ))
        .await?;
    Ok(done == 1)
}
