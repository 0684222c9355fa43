//! Code entry on `/link` (RFC 8628 §5.1): every lookup of a typed code,
//! for the confirmation page or for the decision, first takes one wrong
//! code in advance from the session, network and server budgets, and gives
//! it back when the code was no wrong guess. While the server-wide budget
//! is spent, only codes requested from the browser's own network are
//! shown: an outsider who spends the budget learns nothing more, and a
//! person entering the code of the device in front of them still gets
//! through (SECURITY.md, "How likely is guessing a live code?").

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use crate::codes::UserCode;
use crate::ctx::Ctx;
use crate::device_flow::{self, Decision, LookupError, PendingAuthorization};
use crate::i18n::Lang;
use crate::limits::{CodeAttempt, Refused, RetryAfter, network_key};
use crate::store::{Account, Timestamp};

#[derive(Debug)]
pub enum EntryError {
    /// Code entry is paused for this session or network.
    Limited(RetryAfter),
    /// The server-wide budget is spent and the code was not one requested
    /// from the browser's own network (or no code at all: the answer is
    /// the same).
    Paused(RetryAfter),
    /// An unknown code: a wrong guess, which keeps its tries; with the
    /// tries left (see [`CodeAttempt::tries_left`]).
    WrongCode(Option<(u32, Timestamp)>),
    /// Any other outcome of the lookup.
    Lookup(LookupError),
}

/// Who is entering a code, and when.
pub struct Entry<'a> {
    pub ctx: Ctx<'a>,
    /// The session's id hash: the per-session counter's key.
    pub session: &'a str,
    pub ip: IpAddr,
}

impl Entry<'_> {
    /// Looks up a typed code for the confirmation page.
    pub async fn look_up(&self, input: &str) -> Result<PendingAuthorization, EntryError> {
        let attempt = self.begin(input).await?;
        self.count_lookup();
        let found = device_flow::find_pending(&self.ctx, input).await;
        self.settle(attempt, found).await
    }

    /// Records the person's decision on a typed code. While the server
    /// budget is spent the code is looked up first, so that a code from
    /// another network is neither shown nor decided.
    pub async fn decide(
        &self,
        input: &str,
        approve: bool,
        account: &Account,
        lang: Lang,
    ) -> Result<PendingAuthorization, EntryError> {
        let decision = if approve {
            Decision::Approve
        } else {
            Decision::Deny
        };
        self.decide_as(input, decision, account, lang).await
    }

    /// [`Entry::decide`] for any decision: a wrong pick, a report.
    pub async fn decide_as(
        &self,
        input: &str,
        decision: Decision,
        account: &Account,
        lang: Lang,
    ) -> Result<PendingAuthorization, EntryError> {
        let attempt = self.begin(input).await?;
        self.count_lookup();
        if attempt.paused.is_some() {
            let found = device_flow::find_pending(&self.ctx, input).await;
            if !self.shows(&attempt, &found) {
                return self.settle(attempt, found).await;
            }
        }
        let decided = device_flow::decide_as(
            &self.ctx,
            input,
            decision,
            account,
            lang,
            &self.ip.to_string(),
        )
        .await;
        self.settle(attempt, decided).await
    }

    /// Takes the attempt's slots; a code that does not parse costs
    /// nothing and is answered at once. Counters that cannot be reached
    /// refuse as an outage does: no lookup without its slots.
    async fn begin(&self, input: &str) -> Result<CodeAttempt, EntryError> {
        let attempt = self
            .ctx
            .limits
            .begin_code_entry(self.session, self.ip, self.ctx.now)
            .await
            .map_err(|e| match e {
                Refused::Wait(wait) => EntryError::Limited(wait),
                Refused::Store(e) => EntryError::Lookup(LookupError::Store(e)),
            })?;
        if let Err(e) = UserCode::parse(input) {
            self.ctx.limits.code_entry_counts_not(attempt).await;
            return Err(EntryError::Lookup(LookupError::Malformed(e)));
        }
        Ok(attempt)
    }

    fn count_lookup(&self) {
        self.ctx.limits.code_lookups.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("linkd_code_lookups_total").increment(1);
    }

    /// Whether a lookup's outcome may be shown: always while the server
    /// budget lasts; once it is spent, only a pending code requested from
    /// the browser's own network (IPv4 address, IPv6 /64).
    fn shows(
        &self,
        attempt: &CodeAttempt,
        found: &Result<PendingAuthorization, LookupError>,
    ) -> bool {
        if attempt.paused.is_none() {
            return true;
        }
        match found {
            Ok(pending) => pending
                .auth
                .requested_ip
                .parse::<IpAddr>()
                .is_ok_and(|device| network_key(device) == attempt.network()),
            _ => false,
        }
    }

    /// Keeps the slots of a wrong guess, gives back the others.
    async fn settle(
        &self,
        attempt: CodeAttempt,
        found: Result<PendingAuthorization, LookupError>,
    ) -> Result<PendingAuthorization, EntryError> {
        if let Err(LookupError::Store(_)) = &found {
            // An outage guessed nothing.
            self.ctx.limits.code_entry_counts_not(attempt).await;
            return found.map_err(EntryError::Lookup);
        }
        if !self.shows(&attempt, &found) {
            // Paused: every answer but the own-network code is the same
            // pause, and counts as a wrong code, so that it tells nothing.
            let paused = attempt.paused.unwrap_or(RetryAfter(60));
            return Err(EntryError::Paused(paused));
        }
        match found {
            // RFC 8628 §5.1 limits guessing: only an unknown code is a
            // wrong guess. Used, expired and old codes were real ones.
            Err(LookupError::NotFound) => Err(EntryError::WrongCode(attempt.tries_left)),
            other => {
                self.ctx.limits.code_entry_counts_not(attempt).await;
                other.map_err(EntryError::Lookup)
            }
        }
    }
}
