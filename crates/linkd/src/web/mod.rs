//! The person's pages: server-rendered HTML that works without JavaScript.
//! Errors here are readable pages that say what to do next.

pub mod account;
pub mod assets;
pub mod authorize;
pub mod devices;
pub mod headers;
pub mod help;
pub mod home;
pub mod link;
pub mod not_me;
pub mod passkeys;
pub mod reset;
pub mod short_link;
pub mod signin;
pub mod signup;
pub mod upstream;
pub mod verify;

mod errors;
mod forms;
mod templates;
mod visitor;

pub use errors::{
    ErrorPage, PageError, accept_language_lang, localize, message_page, method_not_allowed,
    not_found, request_lang, with_retry_after,
};
pub use forms::{PageForm, RecordId, query_param, safe_next, see_other, to_sign_in};
pub use templates::{Templates, page_context, render};
pub use visitor::{
    CSRF_COOKIE, CookieName, SESSION_COOKIE, Visitor, ZONE_COOKIE, cookie, set_cookie,
};
