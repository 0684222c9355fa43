//! The page templates, parsed once, and rendering a page with what every
//! page shows (brand, assets, language).

use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use minijinja::value::Kwargs;
use minijinja::{Environment, Value, context};

use super::errors::PageError;
use super::visitor::Visitor;
use crate::i18n::{Lang, interpolate};
use crate::state::AppState;

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/base.html")),
    ("home.html", include_str!("../../templates/home.html")),
    ("link.html", include_str!("../../templates/link.html")),
    ("confirm.html", include_str!("../../templates/confirm.html")),
    ("result.html", include_str!("../../templates/result.html")),
    ("message.html", include_str!("../../templates/message.html")),
    ("signin.html", include_str!("../../templates/signin.html")),
    ("signup.html", include_str!("../../templates/signup.html")),
    ("devices.html", include_str!("../../templates/devices.html")),
    ("device.html", include_str!("../../templates/device.html")),
    ("account.html", include_str!("../../templates/account.html")),
    ("forgot.html", include_str!("../../templates/forgot.html")),
    ("reset.html", include_str!("../../templates/reset.html")),
    ("not_me.html", include_str!("../../templates/not_me.html")),
    ("help.html", include_str!("../../templates/help.html")),
    ("signout.html", include_str!("../../templates/signout.html")),
    ("verify.html", include_str!("../../templates/verify.html")),
    (
        "sync_delete.html",
        include_str!("../../templates/sync_delete.html"),
    ),
    (
        "account_delete.html",
        include_str!("../../templates/account_delete.html"),
    ),
    (
        "upstream.html",
        include_str!("../../templates/upstream.html"),
    ),
];

/// The page templates, parsed once at start-up.
pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.add_function("t", translate);
        for (name, source) in TEMPLATES {
            // The templates are part of the binary; a broken one is a
            // build defect that the test suite catches on its first page.
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(template = name, error = %e, "template does not parse");
            }
        }
        Templates { env }
    }

    pub fn render(&self, name: &str, ctx: Value) -> Result<String, PageError> {
        self.env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(|e| {
                tracing::error!(template = name, error = %e, "template failed to render");
                PageError::Internal
            })
    }
}

/// `{{ t("key", name=value) }}` in a template: the text for `key` in the
/// page's language (the `lang` variable), with `{name}` filled in. The
/// result is escaped like any other value.
fn translate(
    state: &minijinja::State,
    key: &str,
    args: Kwargs,
) -> Result<String, minijinja::Error> {
    let lang = state
        .lookup("lang")
        .and_then(|v| v.as_str().and_then(Lang::from_tag))
        .unwrap_or(Lang::DEFAULT);
    let mut values = Vec::new();
    for name in args.args() {
        let value: Value = args.get(name)?;
        values.push((name.to_string(), value.to_string()));
    }
    Ok(interpolate(lang.t(key), |name| {
        values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }))
}

/// What every page shows whoever is asking: the brand, the assets and the
/// language.
pub fn page_context(state: &AppState, lang: Lang) -> Value {
    let brand = &state.brand;
    context! {
        product => &brand.product_name,
        brand => context! {
            name => &brand.product_name,
            accent => brand.accent.to_string(),
            support_url => &brand.support_url,
            // Without the operator's own support address, the built-in
            // help page.
            help_url => brand.support_url.as_deref().unwrap_or("/help"),
            logo_url => state.assets.logo.url(),
        },
        assets => context! {
            css => state.assets.css.url(),
            js => state.assets.js.url(),
            passkeys => state.assets.passkeys.url(),
        },
        lang => lang.tag(),
    }
}

/// Renders a page with the values every page shows.
pub fn render(
    state: &AppState,
    visitor: &Visitor,
    status: StatusCode,
    template: &str,
    ctx: Value,
) -> Result<Response, PageError> {
    let (csrf, new_cookie) = visitor.csrf(state);
    let common = context! {
        account => visitor.email(),
        typed => super::visitor::typed_token(&csrf),
        csrf => csrf,
        // The sign-in choices: "Continue with <name>" per OpenID provider,
        // and whether local passwords are on.
        sign_in_with => state
            .upstream
            .list()
            .iter()
            .map(|p| context! { id => &p.id, name => &p.name })
            .collect::<Vec<_>>(),
        passwords => !state.config.no_local_passwords,
        zone_guess => visitor.zone_guess(),
        // Passkeys need a domain (passkeys.rs): none at an IP address.
        passkeys_on => super::passkeys::relying_party(state).is_some(),
        ..page_context(state, visitor.lang)
    };
    let body = state
        .templates
        .render(template, context! { ..ctx, ..common })?;
    let mut response = (status, Html(body)).into_response();
    if let Some(cookie) = new_cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        let t = Templates::new();
        for (name, _) in TEMPLATES {
            assert!(t.env.get_template(name).is_ok(), "{name}");
        }
    }
}
