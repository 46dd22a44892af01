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
//!   repeating a delivery token, is a duplicate; so is a stream event repeating an earlier
//!   *stream event*'s; a `sender` or `reconciler` event repeating any earlier (status,
//!   error code) is one too. Twilio's own reports (callbacks and stream events) are never
//!   duplicates of a `sender` or `reconciler` event: they are kept with all their
//!   parameters;
//! - Twilio reports one transition twice when a message has both a StatusCallback and an
//!   Event Streams subscription: a callback repeating the (status, error code) of an
//!   earlier stream event, or the reverse, is an *echo* ([`is_echo`]). It is stored, so
//!   both deliveries stay in the history, but it is one transition in effect: it changes
//!   nothing of the state (not even `updated_at`), and it has no entry of its own in the
//!   change feed, so it is neither listed there nor forwarded.

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
    /// Fills each field still unset from `event`'s parameters: a callback's `AccountSid`,
    /// `From`, `To` and `MessagingServiceSid`, or the same fields of a stream event's data.
    pub fn fill_from(&mut self, event: &StatusEvent) {
        let stream = event.source() == Source::EventStream;
        for (field, callback_name, stream_name) in [
            (&mut self.account_sid, "AccountSid", "data.accountSid"),
            (&mut self.from, "From", "data.from"),
            (&mut self.to, "To", "data.to"),
            (
                &mut self.messaging_service_sid,
                "MessagingServiceSid",
                "data.messagingServiceSid",
            ),
        ] {
            if field.is_none() {
                let name = if stream { stream_name } else { callback_name };
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
    ///
    /// Echoes ([`is_echo`]) are skipped: they change nothing.
    pub fn replay<'a>(
        parties: &Parties,
        transitions: impl IntoIterator<Item = &'a Transition>,
    ) -> Option<MessageState> {
        let mut state: Option<MessageState> = None;
        for (_, transition) in effective(transitions) {
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
    let source = event.source();
    history.iter().any(|seen| {
        seen.status == *event.status()
            && seen.error_code == event.error_code()
            && (!source.is_twilio_report() || seen.source == source)
    })
}

/// Whether `transition`, arriving after `history` (the message's earlier transitions, in
/// arrival order), is an echo: Twilio's report of a transition it already reported through
/// its other channel — a stream event repeating the (status, error code) of a callback, or
/// a callback repeating a stream event's. An echo is kept in the history and changes nothing
/// else (see the module documentation).
pub fn is_echo(history: &[Transition], transition: &Transition) -> bool {
    repeats_other_report(history, transition)
}

/// The transitions that are not echoes, each with its index among `transitions`: the ones
/// a state, a listing position or a change-feed entry is made of.
pub fn effective<'a>(
    transitions: impl IntoIterator<Item = &'a Transition>,
) -> impl Iterator<Item = (usize, &'a Transition)> {
    let mut seen: Vec<&'a Transition> = Vec::new();
    transitions
        .into_iter()
        .enumerate()
        .filter_map(move |(index, transition)| {
            let echo = repeats_other_report(seen.iter().copied(), transition);
            seen.push(transition);
            (!echo).then_some((index, transition))
        })
}

fn repeats_other_report<'a>(
    history: impl IntoIterator<Item = &'a Transition>,
    transition: &Transition,
) -> bool {
    transition.source.is_twilio_report()
        && history.into_iter().any(|seen| {
            seen.source.is_twilio_report()
                && seen.source != transition.source
                && seen.status == transition.status
                && seen.error_code == transition.error_code
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

    #[test]
    fn a_stream_event_repeating_a_callback_is_an_echo_that_changes_nothing_and_the_reverse() {
        for (first, second) in [
            (Source::Callback, Source::EventStream),
            (Source::EventStream, Source::Callback),
        ] {
            let reported = Transition::of(&event("delivered", None, None, first), Timestamp(1));
            let again = Transition::of(&event("delivered", None, None, second), Timestamp(2));
            assert!(
                is_echo(std::slice::from_ref(&reported), &again),
                "{first:?}"
            );
            let echo_event = event("delivered", None, None, second);
            assert!(
                !is_duplicate(std::slice::from_ref(&reported), &[], &echo_event, None),
                "an echo is kept in the history, {first:?} then {second:?}"
            );
            let transitions = [reported.clone(), again];
            let state = MessageState::replay(&Parties::default(), &transitions).expect("one");
            assert_eq!(state.updated_at, Timestamp(1), "an echo moves nothing");
            let effective: Vec<usize> = effective(&transitions).map(|(i, _)| i).collect();
            assert_eq!(effective, vec![0]);
        }
        // Another code, or the same source, is no echo.
        let callback = Transition::of(
            &event("failed", Some(1), None, Source::Callback),
            Timestamp(1),
        );
        let other = Transition::of(
            &event("failed", Some(2), None, Source::EventStream),
            Timestamp(2),
        );
        assert!(!is_echo(std::slice::from_ref(&callback), &other));
        let sender = Transition::of(&event("queued", None, None, Source::Sender), Timestamp(1));
        let stream = Transition::of(
            &event("queued", None, None, Source::EventStream),
            Timestamp(2),
        );
        assert!(!is_echo(std::slice::from_ref(&sender), &stream));
    }

    #[test]
    fn an_echo_never_changes_the_current_status_even_of_equal_rank() {
        // Without the echo rule, the late `delivered` would win as the later arrival.
        let transitions = [
            Transition::of(
                &event("delivered", None, None, Source::Callback),
                Timestamp(1),
            ),
            Transition::of(&event("failed", None, None, Source::Callback), Timestamp(2)),
            Transition::of(
                &event("delivered", None, None, Source::EventStream),
                Timestamp(3),
            ),
        ];
        let state = MessageState::replay(&Parties::default(), &transitions).expect("one");
        assert_eq!(state.status, Some(KnownStatus::Failed));
        assert_eq!(state.updated_at, Timestamp(2));
    }

    #[test]
    fn stream_events_repeat_stream_events_never_sender_or_reconciler_events() {
        for earlier in [Source::Sender, Source::Reconciler] {
            let history = [Transition::of(
                &event("sent", None, None, earlier),
                Timestamp(1),
            )];
            let stream = event("sent", None, None, Source::EventStream);
            assert!(!is_duplicate(&history, &[], &stream, None), "{earlier:?}");
        }
        let history = [Transition::of(
            &event("sent", None, None, Source::EventStream),
            Timestamp(1),
        )];
        let again = event("sent", None, None, Source::EventStream);
        assert!(is_duplicate(&history, &[], &again, None));
        let by_id = event("delivered", None, None, Source::EventStream);
        assert!(is_duplicate(
            &history,
            &["ce:EZ1".into()],
            &by_id,
            Some("ce:EZ1")
        ));
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
