//! A v2 channel's operations and events. Each operation runs in its own
//! task (the channel keeps reading and answering heartbeats meanwhile: a
//! ping may wait a minute) that waits for the workers' tally and puts the
//! `result` or `op_error` into the channel's mailbox; at most
//! [`MAX_PENDING_OPS`] at once per channel. Events about the backend's own
//! sessions are forwarded into the mailbox by one task, which drops (and
//! counts, in a `lost` event) what the backend is too slow to take.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::config::BackendPublish;
use crate::hub::events::{Interest, Subscription};
use crate::hub::ops::{op_from_value, Verb};
use crate::hub::{Event, Op, Router};
use crate::pool::registry::hub::Mailbox;
use crate::pool::registry::protocol::ServerMessage;
use crate::proxy::env::Env;
use crate::proxy::hub_worker::perform;
use crate::rt::notify::LocalEvent;

/// Operations one channel may have under way; past it, `op_error` 429.
pub(crate) const MAX_PENDING_OPS: usize = 64;

/// The `op_error` answer.
pub(super) fn op_refused(reference: Option<Value>, status: u16, message: String) -> ServerMessage {
    ServerMessage::OpError {
        reference,
        status,
        message,
    }
}

/// One channel's operations under way and its events forwarder. Dropping
/// it (the channel ended) stops both.
pub(super) struct ChannelOps {
    pending: Rc<Cell<usize>>,
    ended: Rc<LocalEvent>,
    /// Stops the running events forwarder, if any.
    events: Option<Rc<LocalEvent>>,
}

impl Drop for ChannelOps {
    fn drop(&mut self) {
        self.ended.fire();
        if let Some(stop) = &self.events {
            stop.fire();
        }
    }
}

/// Counts one operation under way for as long as its task lives.
struct PendingGuard(Rc<Cell<usize>>);

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

impl ChannelOps {
    pub(super) fn new() -> ChannelOps {
        ChannelOps {
            pending: Rc::new(Cell::new(0)),
            ended: Rc::new(LocalEvent::new()),
            events: None,
        }
    }

    /// Checks an operation from backend `backend` and starts it; returns
    /// the answer at once when it is refused.
    pub(super) fn start(
        &mut self,
        env: &Env,
        backend: &str,
        name: Verb,
        reference: Option<Value>,
        body: Map<String, Value>,
        mailbox: &Arc<Mailbox>,
    ) -> Option<ServerMessage> {
        if self.pending.get() >= MAX_PENDING_OPS {
            let message = format!(
                "{MAX_PENDING_OPS} operations are under way on this channel; wait for their results"
            );
            return Some(op_refused(reference, 429, message));
        }
        let body = Value::Object(body);
        let mut op = match op_from_value(name, &body, env.cfg().max_message_size) {
            Ok(op) => op,
            Err(e) => return Some(op_refused(reference, e.status(), e.to_string())),
        };
        if env.cfg().backend_publish == BackendPublish::Local {
            op.scope = Some(backend.to_string());
        }
        self.pending.set(self.pending.get() + 1);
        let task = run_op(
            env.router.clone(),
            op,
            reference,
            mailbox.clone(),
            PendingGuard(self.pending.clone()),
            self.ended.clone(),
        );
        monoio::spawn(task);
        None
    }

    /// Starts (or restarts with new interest, or stops) the events about
    /// backend `backend`'s sessions.
    pub(super) fn events(
        &mut self,
        env: &Env,
        backend: &str,
        messages: bool,
        enabled: bool,
        mailbox: &Arc<Mailbox>,
    ) {
        if let Some(stop) = self.events.take() {
            stop.fire();
        }
        if !enabled {
            return;
        }
        let sub = env.events.subscribe(Interest {
            messages,
            backend: Some(backend.to_string()),
        });
        let stop = Rc::new(LocalEvent::new());
        self.events = Some(stop.clone());
        monoio::spawn(forward_events(sub, mailbox.clone(), stop));
    }
}

/// Waits for the workers' answer (and a ping's pongs) and puts the answer
/// in the mailbox; gives up quietly when the channel ends first.
async fn run_op(
    router: Arc<Router>,
    op: Op,
    reference: Option<Value>,
    mailbox: Arc<Mailbox>,
    guard: PendingGuard,
    ended: Rc<LocalEvent>,
) {
    let answered = monoio::select! {
        done = perform(&router, op) => done,
        _ = ended.wait() => return,
    };
    let reply = match answered {
        Ok(o) => ServerMessage::Result {
            reference,
            matched: o.matched,
            delivered: o.delivered,
            skipped: o.skipped,
            dropped: o.dropped,
            pongs: o.pongs,
        },
        Err(e) => op_refused(reference, e.status(), e.to_string()),
    };
    drop(guard);
    mailbox.push(reply);
}

/// An event as the backend gets it: its fields, its kind under `"event"`.
pub(super) fn event_message(event: &Event) -> Option<ServerMessage> {
    let Ok(Value::Object(mut fields)) = serde_json::to_value(event) else {
        return None;
    };
    let kind = fields.remove("type")?;
    fields.insert("event".into(), kind);
    Some(ServerMessage::Event { fields })
}

/// The notice of `lost` events the backend did not get.
pub(super) fn lost_message(lost: u64) -> ServerMessage {
    let mut fields = Map::new();
    fields.insert("event".into(), "lost".into());
    fields.insert("lost".into(), lost.into());
    fields.insert("ts_ms".into(), crate::pool::clock::unix_ms().into());
    ServerMessage::Event { fields }
}

/// Moves events from the subscription into the mailbox until `stop`
/// fires (the channel ended or asked again) or the bus shuts. What does
/// not fit (the subscription's queue or the mailbox full) is counted and
/// told in a `lost` event before the next one that fits.
pub(super) async fn forward_events(sub: Subscription, mailbox: Arc<Mailbox>, stop: Rc<LocalEvent>) {
    let mut lost: u64 = 0;
    loop {
        let next = monoio::select! {
            e = sub.next() => e,
            _ = stop.wait() => None,
        };
        let Some(event) = next else { break };
        lost += sub.take_lost();
        if lost > 0 {
            if mailbox.push_event(lost_message(lost)) {
                lost = 0;
            } else {
                lost += 1;
                continue;
            }
        }
        let pushed = event_message(&event).is_some_and(|msg| mailbox.push_event(msg));
        if !pushed {
            lost += 1;
        }
    }
}
