//! `/devices`: the person's linked devices, with Rename and Unlink.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;
use serde::Serialize;

use super::{PageError, PageForm, RecordId, Visitor, render, see_other, to_sign_in};
use crate::client_ip::ClientIp;
use crate::device_flow::{MAX_DEVICE_NAME_CHARS, clean_device_name};
use crate::devices::{self, DeviceError};
use crate::i18n::Lang;
use crate::state::AppState;
use crate::store::LinkedDevice;

#[derive(Serialize)]
struct DeviceView {
    id: String,
    label: String,
    app: String,
    linked: String,
    linked_ip: String,
    last_refresh: Option<String>,
}

fn view(d: &LinkedDevice, now: i64, lang: Lang) -> DeviceView {
    DeviceView {
        id: d.id.clone(),
        // Cleaned on the way in; again here for labels stored before
        // invisible characters were removed.
        label: clean_device_name(Some(&d.label)).unwrap_or_else(|| d.app_name.clone()),
        app: d.app_name.clone(),
        linked: lang.fmt(
            "devices.when",
            &[
                ("at", &lang.datetime(d.linked_at)),
                ("ago", &lang.ago(now - d.linked_at)),
            ],
        ),
        linked_ip: d.linked_ip.clone(),
        last_refresh: d.last_refresh_at.map(|t| lang.ago(now - t)),
    }
}

async fn devices_page(
    state: &AppState,
    visitor: &Visitor,
    status: StatusCode,
    error: Option<String>,
) -> Result<Response, PageError> {
    let Some(account) = visitor.account() else {
        return Ok(to_sign_in("/devices"));
    };
    let now = state.clock.now();
    let list: Vec<DeviceView> = state
        .store
        .list_linked_devices(&account.id)
        .await?
        .iter()
        .map(|d| view(d, now, visitor.lang))
        .collect();
    render(
        state,
        visitor,
        status,
        "devices.html",
        context! { title => visitor.lang.t("devices.title"), devices => list, error => error },
    )
}

pub async fn page(State(state): State<AppState>, visitor: Visitor) -> Result<Response, PageError> {
    devices_page(&state, &visitor, StatusCode::OK, None).await
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
        Ok(_) => Ok(see_other("/devices")),
        Err(DeviceError::NotFound) => Err(PageError::NotFound),
        Err(DeviceError::BadName) => {
            let why = visitor.lang.fmt(
                "devices.error.bad_name",
                &[("max", &MAX_DEVICE_NAME_CHARS.to_string())],
            );
            devices_page(&state, &visitor, StatusCode::BAD_REQUEST, Some(why)).await
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
    if visitor.account().is_none() {
        return Ok(to_sign_in("/devices"));
    }
    visitor.check_csrf(form.get("csrf"))?;
    let account = visitor.account().ok_or(PageError::NotFound)?;
    match devices::unlink_own(
        state.store.as_ref(),
        &account.id,
        &id,
        &ip.to_string(),
        state.clock.now(),
    )
    .await
    {
        Ok(()) => Ok(see_other("/devices")),
        Err(DeviceError::NotFound | DeviceError::BadName) => Err(PageError::NotFound),
        Err(DeviceError::Store(e)) => Err(e.into()),
    }
}
