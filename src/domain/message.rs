//! The one state machine of a message: what its current state is after a sequence of
//! transitions, and which transitions are duplicates. Both stores and the as-of replay of
//! paging and the change feed use these functions; none of them re-implements the rules.
//!
//! The rules (SPEC, "Out of order" and "Duplicates"):
//! - the current status is the known status of highest rank seen; an equal rank goes to
//!   the later `RawDlrDoneDate`, else to the later arrival; an unknown status is kept in the
//!   history and never becomes current;
//! - `updated_at` is the arrival of the latest stored transition, whatever its rank;
//! - account, sender, recipient and messaging service are set by the first transition that
//!   carries them and never change after;
//! - a callback repeating the (status, error code) of an earlier *callback*, or any event
//!   repeating a delivery token, is a duplicate; a `sender` or `reconciler` event repeating
//!   any earlier (status, error code) is one too. A callback is never a duplicate of a
//!   `sender` or `reconciler` event: Twilio's own report is kept with all its parameters.

use serde::{Deserialize, Serialize};

use super::{KnownStatus, MessageStatus, Source, StatusEvent, Timestamp};

/// What the state machine needs of one stored event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub status: MessageStatus,
    pub error_code: Option<u32>,
    pub raw_dlr_done_date: Option<String>,
    pub received_at: Timestamp,
    pub source: Source,
}

impl Transition {
    /// The transition `event` makes when it is stored at `received_at`.
    pub fn of(event: &StatusEvent, received_at: Timestamp) -> Transition {
        Transition {
            status: event.status().clone(),
            error_code: event.error_code(),
            raw_dlr_done_date: event.raw_dlr_done_date().map(str::to_owned),
            received_at,
            source: event.source(),
        }
    }
}

/// The fields of a message that its first carrying event sets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parties {
    pub account_sid: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub messaging_service_sid: Option<String>,
}

impl Parties {
    /// Fills each field still unset from `event`'s parameters.
    pub fn fill_from(&mut self, event: &StatusEvent) {
        for (field, name) in [
            (&mut self.account_sid, "AccountSid"),
            (&mut self.from, "From"),
            (&mut self.to, "To"),
            (&mut self.messaging_service_sid, "MessagingServiceSid"),
        ] {
            if field.is_none() {
                *field = event.param(name).map(str::to_owned);
            }
        }
    }
}

/// A message as its transitions leave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageState {
    pub parties: Parties,
    /// `None` until a known status arrives.
    pub status: Option<KnownStatus>,
    /// The error code reported with the current status.
    pub error_code: Option<u32>,
    /// `RawDlrDoneDate` of the transition that set the current status.
    pub status_dlr_done: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl MessageState {
    /// The state after `transitions`, in arrival order; `None` when there are none.
    pub fn replay<'a>(
        parties: &Parties,
        transitions: impl IntoIterator<Item = &'a Transition>,
    ) -> Option<MessageState> {
        let mut state: Option<MessageState> = None;
        for transition in transitions {
            match state.as_mut() {
                Some(state) => state.apply(transition),
                None => state = Some(MessageState::first(parties.clone(), transition)),
            }
        }
        state
    }

    /// The state after `transitions` as they stood at `at`: only those received by then.
    pub fn as_of(parties: &Parties, transitions: &[Transition], at: Timestamp) -> Option<Self> {
        MessageState::replay(
            parties,
            transitions.iter().take_while(|t| t.received_at <= at),
        )
    }

    /// A new message's state after its first transition.
    pub fn first(parties: Parties, transition: &Transition) -> MessageState {
        let mut state = MessageState {
            parties,
            status: None,
            error_code: None,
            status_dlr_done: None,
            created_at: transition.received_at,
            updated_at: transition.received_at,
        };
        state.apply(transition);
        state
    }

    /// Applies one more transition, arrived after every earlier one.
    pub fn apply(&mut self, transition: &Transition) {
        if let Some(known) = transition.status.known() {
            if self.takes_over(known, transition.raw_dlr_done_date.as_deref()) {
                self.status = Some(known);
                self.error_code = transition.error_code;
                self.status_dlr_done = transition.raw_dlr_done_date.clone();
            }
        }
        self.updated_at = transition.received_at;
    }

    /// Whether a known status `new` (reported done at `new_dlr`) replaces the current one.
    fn takes_over(&self, new: KnownStatus, new_dlr: Option<&str>) -> bool {
        let Some(current) = self.status else {
            return true;
        };
        match new.rank().cmp(&current.rank()) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            // RawDlrDoneDate is YYMMDDhhmm (sometimes with seconds): fixed-width digits, so
            // byte order is time order. Without both dates, the later arrival wins.
            std::cmp::Ordering::Equal => match (self.status_dlr_done.as_deref(), new_dlr) {
                (Some(current), Some(new)) => new >= current,
                _ => true,
            },
        }
    }
}

/// Whether `event`, delivered with `token` (if any), is already among `history` (the
/// message's stored transitions) or `tokens` (the delivery tokens stored with them).
pub fn is_duplicate(
    history: &[Transition],
    tokens: &[String],
    event: &StatusEvent,
    token: Option<&str>,
) -> bool {
    if token.is_some_and(|token| tokens.iter().any(|seen| seen == token)) {
        return true;
    }
    let callback = event.source() == Source::Callback;
    history.iter().any(|seen| {
        seen.status == *event.status()
            && seen.error_code == event.error_code()
            && (!callback || seen.source == Source::Callback)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SID: &str = "SM0123456789abcdef0123456789abcdef";

    fn event(status: &str, code: Option<u32>, dlr: Option<&str>, source: Source) -> StatusEvent {
        let mut params = vec![
            ("MessageSid".to_string(), SID.to_string()),
            ("MessageStatus".to_string(), status.to_string()),
        ];
        if let Some(code) = code {
            params.push(("ErrorCode".into(), code.to_string()));
        }
        if let Some(dlr) = dlr {
            params.push(("RawDlrDoneDate".into(), dlr.into()));
        }
        StatusEvent::from_params(params, source).expect("valid")
    }

    fn final_status(events: &[StatusEvent]) -> Option<KnownStatus> {
        let transitions: Vec<_> = events
            .iter()
            .enumerate()
            .map(|(i, e)| Transition::of(e, Timestamp(i as u64 + 1)))
            .collect();
        MessageState::replay(&Parties::default(), &transitions).and_then(|s| s.status)
    }

    #[test]
    fn equal_rank_goes_to_the_later_dlr_date_then_the_later_arrival() {
        let late = event("failed", None, Some("2611260905"), Source::Callback);
        let early = event("delivered", None, Some("2611260901"), Source::Callback);
        let expected = Some(KnownStatus::Failed);
        assert_eq!(final_status(&[late.clone(), early.clone()]), expected);
        assert_eq!(final_status(&[early, late]), expected);
        let plain = [
            event("delivered", None, None, Source::Callback),
            event("undelivered", None, None, Source::Callback),
        ];
        assert_eq!(final_status(&plain), Some(KnownStatus::Undelivered));
    }

    #[test]
    fn lower_ranks_and_unknown_statuses_do_not_move_the_current_status() {
        let events = [
            event("delivered", None, None, Source::Callback),
            event("sent", None, None, Source::Callback),
            event("bounced", None, None, Source::Callback),
        ];
        assert_eq!(final_status(&events), Some(KnownStatus::Delivered));
        let unknown = [event("bounced", None, None, Source::Callback)];
        assert_eq!(final_status(&unknown), None);
    }

    #[test]
    fn a_callback_is_never_swallowed_by_a_sender_or_reconciler_event() {
        for earlier in [Source::Sender, Source::Reconciler] {
            let history = [Transition::of(
                &event("delivered", None, None, earlier),
                Timestamp(1),
            )];
            let callback = event("delivered", None, None, Source::Callback);
            assert!(!is_duplicate(&history, &[], &callback, None), "{earlier:?}");
            let again = event("delivered", None, None, Source::Reconciler);
            assert!(is_duplicate(&history, &[], &again, None), "{earlier:?}");
        }
        let history = [Transition::of(
            &event("sent", Some(1), None, Source::Callback),
            Timestamp(1),
        )];
        let same = event("sent", Some(1), None, Source::Callback);
        let other_code = event("sent", Some(2), None, Source::Callback);
        assert!(is_duplicate(&history, &[], &same, None));
        assert!(!is_duplicate(&history, &[], &other_code, None));
        assert!(is_duplicate(&[], &["t".into()], &other_code, Some("t")));
    }

    /// A plain model of the rules: the current status is the maximum by (rank, dlr date
    /// present and later, arrival) over the known transitions, computed from scratch.
    fn model(transitions: &[Transition]) -> Option<(KnownStatus, Option<u32>)> {
        let mut best: Option<&Transition> = None;
        for t in transitions.iter().filter(|t| t.status.known().is_some()) {
            let replaces = match best {
                None => true,
                Some(b) => {
                    let (new, old) = (t.status.known(), b.status.known());
                    let (new, old) = (new.map(KnownStatus::rank), old.map(KnownStatus::rank));
                    match new.cmp(&old) {
                        std::cmp::Ordering::Equal => {
                            match (&b.raw_dlr_done_date, &t.raw_dlr_done_date) {
                                (Some(old), Some(new)) => new >= old,
                                _ => true,
                            }
                        }
                        other => other.is_gt(),
                    }
                }
            };
            if replaces {
                best = Some(t);
            }
        }
        best.and_then(|t| Some((t.status.known()?, t.error_code)))
    }

    fn any_transition() -> impl Strategy<Value = (String, Option<u32>, Option<String>)> {
        let status = prop::sample::select(vec![
            "queued",
            "sent",
            "delivered",
            "undelivered",
            "failed",
            "read",
            "accepted",
            "bounced",
        ]);
        let code = prop::option::of(prop::sample::select(vec![30003u32, 30005, 30008]));
        let dlr = prop::option::of(prop::sample::select(vec![
            "2611260900".to_string(),
            "2611260901".to_string(),
            "261126090130".to_string(),
        ]));
        (status.prop_map(str::to_owned), code, dlr)
    }

    proptest! {
        #[test]
        fn replay_equals_the_model_and_as_of_equals_a_replay_of_a_prefix(
            raw in prop::collection::vec(any_transition(), 1..12),
            cut in 0u64..14,
        ) {
            let transitions: Vec<Transition> = raw
                .iter()
                .enumerate()
                .map(|(i, (status, code, dlr))| {
                    let e = event(status, *code, dlr.as_deref(), Source::Callback);
                    Transition::of(&e, Timestamp(i as u64 + 1))
                })
                .collect();
            let state = MessageState::replay(&Parties::default(), &transitions).expect("one");
            prop_assert_eq!(state.status.map(|s| (s, state.error_code)), model(&transitions));
            prop_assert_eq!(state.updated_at, Timestamp(transitions.len() as u64));
            prop_assert_eq!(state.created_at, Timestamp(1));
            let prefix: Vec<_> = transitions.iter().take(cut as usize).cloned().collect();
            let as_of = MessageState::as_of(&Parties::default(), &transitions, Timestamp(cut));
            prop_assert_eq!(as_of, MessageState::replay(&Parties::default(), &prefix));
        }
    }
}
