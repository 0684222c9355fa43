//! `/devices`: the person's linked devices in a compact list, each with
//! Edit (rename) and Unlink behind a page of its own, so nothing changes
//! with one stray tap, and a notice that says what was done.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;
use serde::Serialize;

use super::{PageError, PageForm, RecordId, Visitor, query_param, render, see_other, to_sign_in};
use crate::client_ip::ClientIp;
use crate::device_flow::{MAX_DEVICE_NAME_CHARS, clean_device_name};
use crate::devices::{self, DeviceError};
use crate::i18n::Lang;
use crate::state::AppState;
use crate::store::{DeviceKind, LinkedDevice};

#[derive(Serialize)]
struct DeviceView {
    id: String,
    label: String,
    app: String,
    kind: String,
    linked: String,
    linked_ip: String,
    last_used: String,
    /// "2 of 3" when other devices have the same name, oldest first.
    twin: Option<String>,
}

/// The name a person reads. Cleaned on the way in; again here for labels
/// stored before invisible characters were removed.
fn label(d: &LinkedDevice) -> String {
    clean_device_name(Some(&d.label)).unwrap_or_else(|| d.app_name.clone())
}

fn view(d: &LinkedDevice, now: i64, visitor: &Visitor) -> DeviceView {
    let lang = visitor.lang;
    let kind = match d.kind {
        DeviceKind::Code => "devices.kind.code",
        DeviceKind::Browser => "devices.kind.browser",
    };
    DeviceView {
        id: d.id.clone(),
        label: label(d),
        app: d.app_name.clone(),
        kind: lang.t(kind).to_string(),
        linked: lang.fmt(
            "devices.when",
            &[
                ("at", &visitor.datetime(d.linked_at, now)),
                ("ago", &lang.ago(now - d.linked_at)),
            ],
        ),
        linked_ip: d.linked_ip.clone(),
        last_used: match d.last_refresh_at {
            Some(t) => lang.ago(now - t),
            None => lang.t("devices.not_since_linked").to_string(),
        },
        twin: None,
    }
}

/// Numbers devices that share a name (ignoring case), oldest first, so
/// two "Demo TV"s read as "1 of 2" and "2 of 2".
fn number_twins(list: &mut [DeviceView], linked_at: &[i64], lang: Lang) {
    for i in 0..list.len() {
        let name = list[i].label.to_lowercase();
        let mut same: Vec<usize> = (0..list.len())
            .filter(|&j| list[j].label.to_lowercase() == name)
            .collect();
        if same.len() < 2 {
            continue;
        }
        same.sort_by_key(|&j| (linked_at[j], list[j].id.clone()));
        let n = same.iter().position(|&j| j == i).unwrap_or(0) + 1;
        list[i].twin = Some(lang.fmt(
            "devices.twin",
            &[("n", &n.to_string()), ("count", &same.len().to_string())],
        ));
    }
}

/// What the list says after a change.
#[derive(Serialize)]
struct Notice {
    text: String,
    /// The renamed device, whose card carries the notice (the list opens
    /// at it); `None` above the list, for a device no longer in it.
    device: Option<String>,
}

/// What the list says after a change: "Removed Office TV", "Renamed to
/// Office TV". The device is named by its id, read back for this account
/// only, so a crafted link cannot put words on the page.
async fn notice(
    state: &AppState,
    visitor: &Visitor,
    account_id: &str,
    query: Option<&str>,
) -> Result<Option<Notice>, PageError> {
    let lang = visitor.lang;
    for (param, key, gone) in [
        ("removed", "devices.removed", true),
        ("renamed", "devices.renamed", false),
    ] {
        let Some(id) = query_param(query, param) else {
            continue;
        };
        if id.len() > 64 {
            return Ok(None);
        }
        let found = state.store.get_linked_device(&id).await?;
        return Ok(found
            .filter(|d| d.account_id == account_id && d.revoked_at.is_some() == gone)
            .map(|d| Notice {
                text: lang.fmt(key, &[("name", &label(&d))]),
                device: (!gone).then(|| d.id.clone()),
            }));
    }
    Ok(None)
}

pub async fn page(
    State(state): State<AppState>,
    visitor: Visitor,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    let Some(account) = visitor.account() else {
        return Ok(to_sign_in("/devices"));
    };
    let now = state.clock.now();
    let lang = visitor.lang;
    let devices = state.store.list_linked_devices(&account.id).await?;
    let mut list: Vec<DeviceView> = devices.iter().map(|d| view(d, now, &visitor)).collect();
    let linked_at: Vec<i64> = devices.iter().map(|d| d.linked_at).collect();
    number_twins(&mut list, &linked_at, lang);
    let notice = notice(&state, &visitor, &account.id, query.as_deref()).await?;
    render(
        &state,
        &visitor,
        StatusCode::OK,
        "devices.html",
        context! {
            title => lang.t("devices.title"),
            devices => list,
            notice => notice,
            shows_times => true,
        },
    )
}

/// One of the person's devices for its own page, or the page's 404.
async fn own(state: &AppState, account_id: &str, id: &str) -> Result<LinkedDevice, PageError> {
    match devices::own_device(state.store.as_ref(), account_id, id).await {
        Ok(d) => Ok(d),
        Err(DeviceError::Store(e)) => Err(e.into()),
        Err(_) => Err(PageError::NotFound),
    }
}

/// A device's own page: `edit` (the rename form) or `unlink` (the
/// confirmation step).
async fn device_page(
    state: &AppState,
    visitor: &Visitor,
    id: &str,
    action: &'static str,
    status: StatusCode,
    error: Option<String>,
    typed: Option<&str>,
) -> Result<Response, PageError> {
    let Some(account) = visitor.account() else {
        return Ok(to_sign_in("/devices"));
    };
    let device = own(state, &account.id, id).await?;
    let lang = visitor.lang;
    let shown = view(&device, state.clock.now(), visitor);
    let title = lang.fmt(
        &format!("devices.{action}.title"),
        &[("name", &shown.label)],
    );
    render(
        state,
        visitor,
        status,
        "device.html",
        context! {
            title => title.clone(),
            heading => title,
            action => action,
            device => shown,
            typed => typed.map(|t| t.chars().take(MAX_DEVICE_NAME_CHARS * 2).collect::<String>()),
            max_name => MAX_DEVICE_NAME_CHARS,
            error => error,
            shows_times => true,
        },
    )
}

/// `GET /devices/{id}/edit`.
pub async fn edit(
    State(state): State<AppState>,
    visitor: Visitor,
    RecordId(id): RecordId,
) -> Result<Response, PageError> {
    device_page(&state, &visitor, &id, "edit", StatusCode::OK, None, None).await
}

/// `GET /devices/{id}/unlink`: the confirmation step before unlinking.
pub async fn confirm_unlink(
    State(state): State<AppState>,
    visitor: Visitor,
    RecordId(id): RecordId,
) -> Result<Response, PageError> {
    device_page(&state, &visitor, &id, "unlink", StatusCode::OK, None, None).await
}

pub async fn rename(
    State(state): State<AppState>,
    visitor: Visitor,
    RecordId(id): RecordId,
    form: PageForm,
) -> Result<Response, PageError> {
    let Some(account) = visitor.account() else {
        return Ok(to_sign_in("/devices"));
    };
    visitor.check_csrf(form.get("csrf"))?;
    let name = form.get("label").unwrap_or("");
    match devices::rename(state.store.as_ref(), &account.id, &id, name).await {
        // Back to the device's own card, which says what was done.
        Ok(_) => Ok(see_other(&format!("/devices?renamed={id}#device-{id}"))),
        Err(DeviceError::NotFound) => Err(PageError::NotFound),
        Err(DeviceError::BadName) => {
            let why = visitor.lang.fmt(
                "devices.error.bad_name",
                &[("max", &MAX_DEVICE_NAME_CHARS.to_string())],
            );
            let status = StatusCode::BAD_REQUEST;
            device_page(&state, &visitor, &id, "edit", status, Some(why), Some(name)).await
        }
        Err(DeviceError::Store(e)) => Err(e.into()),
    }
}

pub async fn unlink(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    visitor: Visitor,
    RecordId(id): RecordId,
    form: PageForm,
) -> Result<Response, PageError> {
    let Some(account) = visitor.account() else {
        return Ok(to_sign_in("/devices"));
    };
    visitor.check_csrf(form.get("csrf"))?;
    match devices::unlink_own(
        state.store.as_ref(),
        &account.id,
        &id,
        &ip.to_string(),
        state.clock.now(),
    )
    .await
    {
        Ok(()) => Ok(see_other(&format!("/devices?removed={id}"))),
        Err(DeviceError::NotFound | DeviceError::BadName) => Err(PageError::NotFound),
        Err(DeviceError::Store(e)) => Err(e.into()),
    }
}
