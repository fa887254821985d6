//! The message hub on one worker: the channel index of the sessions this
//! worker owns, and the task that applies what the worker's inbox brings
//! (publish, send, ping, close, subscribe, listings) to them. Everything
//! here is the worker's own: no lock shared with other cores on the way
//! from a publish to the sessions' send queues.

use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Arc;

use super::conns::{ConnCommand, ConnHandle};
use super::env::Env;
use super::pool_events::{emit_event, wants};
use super::session::{Enqueued, WsSession};
use crate::hub::events::{ClosedBy, EventKind};
use crate::hub::ops::OpError;
use crate::hub::ops::{parse_channel_list, Filter, Op, OpKind, Outcome};
use crate::hub::router::{Command, Router, SessionView, Tally};
use std::time::Duration;

/// Reports an event built by `make`, only when someone listens.
fn emit(env: &Env, make: impl FnOnce() -> EventKind) {
    if wants(env) {
        emit_event(&env.hooks, &env.events, make);
    }
}

/// A session has just been established: its channels from the backend's
/// 101 (`X-Wslb-Channels`) are joined and its opening is reported.
pub(crate) fn opened(env: &Env, session: &WsSession, channels: Option<&str>) {
    if let Some(value) = channels {
        match parse_channel_list(value) {
            Ok(list) => {
                for name in &list {
                    env.channels.join(session, name);
                }
            }
            Err(e) => {
                tracing::debug!(backend = %session.backend, error = %e, "X-Wslb-Channels refused");
            }
        }
    }
    super::access::session_opened(env);
    emit(env, || EventKind::SessionOpen {
        id: env.router.ids.format(session.local),
        client: session.peer.to_string(),
        backend: session.backend.to_string(),
        path: session.path.to_string(),
        subprotocol: session.subprotocol.as_deref().map(str::to_string),
    });
}

/// A session has ended: it leaves its channels and its end is reported.
pub(crate) fn closed(env: &Env, session: &WsSession) {
    env.channels.leave_all(session);
    super::access::session_done(env, session);
    emit(env, || {
        let (bytes_in, bytes_out) = session.track.bytes();
        let (messages_in, messages_out) = session.track.messages();
        EventKind::SessionClosed {
            id: env.router.ids.format(session.local),
            backend: session.backend.to_string(),
            code: session.track.code(),
            closed_by: session.track.closed_by(),
            duration_ms: session.started.elapsed().as_millis() as u64,
            bytes_in,
            bytes_out,
            messages_in,
            messages_out,
        }
    });
}

/// How long the workers have to answer an operation (they answer in
/// microseconds unless stopping).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Waits until every worker asked has answered into `tally`, at most
/// [`ANSWER_TIMEOUT`].
async fn answered(tally: &Tally) -> Result<(), OpError> {
    monoio::time::timeout(ANSWER_TIMEOUT, tally.wait())
        .await
        .map_err(|_| OpError::Unavailable)
}

/// Runs `op` on every worker that may hold a matching session and waits for
/// the answer: for a ping, until every pinged session answered or the
/// ping's timeout passed. The one call behind every door (admin API,
/// control channel). An op naming one session that no worker has is
/// `UnknownId`.
pub(crate) async fn perform(router: &Router, op: Op) -> Result<Outcome, OpError> {
    let single = op.single.clone();
    let ping = match op.kind {
        OpKind::Ping { timeout_ms } => Some(Duration::from_millis(timeout_ms)),
        _ => None,
    };
    let tally = router.apply(op);
    answered(&tally).await?;
    let mut outcome = tally.outcome();
    if let Some(wait) = ping {
        let deadline = std::time::Instant::now() + wait;
        while tally.pongs() < outcome.delivered && std::time::Instant::now() < deadline {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            monoio::time::sleep(left.min(Duration::from_millis(5))).await;
        }
        tally.close();
        outcome.pongs = Some(tally.pongs());
    }
    match single {
        Some(id) if outcome.matched == 0 => Err(OpError::UnknownId(id)),
        _ => Ok(outcome),
    }
}

/// Lists the sessions matching `filter` over every worker: the page
/// `offset..offset + limit` in id order, and how many match in all.
pub(crate) async fn list_sessions(
    router: &Router,
    filter: Filter,
    offset: usize,
    limit: usize,
) -> Result<(Vec<SessionView>, u64), OpError> {
    let tally = router.list(filter, offset.saturating_add(limit));
    answered(&tally).await?;
    let (views, total) = tally.take_sessions();
    Ok((views.into_iter().skip(offset).take(limit).collect(), total))
}

/// Applies what this worker's inbox brings, until the worker stops.
pub(crate) async fn run(env: Rc<Env>) {
    let Some(inbox) = env.router.inbox(env.worker) else {
        return;
    };
    loop {
        let cmd = inbox.next().await;
        handle(&env, cmd);
    }
}

/// Applies one command to this worker's sessions.
pub(crate) fn handle(env: &Env, cmd: Command) {
    match cmd {
        Command::Apply { op, tally } => {
            let outcome = apply(env, &op, &tally);
            env.router.totals.add(&outcome);
            tally.add(&outcome);
            tally.worker_done();
        }
        Command::List {
            filter,
            limit,
            tally,
        } => {
            let (views, matched) = list(env, &filter, limit);
            tally.add_sessions(views, matched);
            tally.worker_done();
        }
    }
}

/// This worker's sessions an operation picks.
fn select(env: &Env, filter: &Filter, scope: Option<&str>) -> Vec<(Rc<ConnHandle>, Rc<WsSession>)> {
    let ours = |ids: &[String]| -> HashSet<u64> {
        ids.iter()
            .filter_map(|id| env.router.ids.parse(id))
            .filter(|&(w, _)| w == env.worker)
            .map(|(_, local)| local)
            .collect()
    };
    let lookup = |local: &u64| {
        let h = env.conns.get(*local)?;
        let s = h.session()?;
        Some((h, s))
    };
    let candidates: Vec<(Rc<ConnHandle>, Rc<WsSession>)> = match (&filter.include, &filter.channel)
    {
        (Some(ids), _) => ours(ids).iter().filter_map(lookup).collect(),
        (None, Some(channel)) => env
            .channels
            .members(channel)
            .iter()
            .filter_map(lookup)
            .collect(),
        (None, None) => env.conns.sessions(),
    };
    if candidates.is_empty() {
        return candidates;
    }
    let exclude = ours(&filter.exclude);
    // Candidates taken from the channel's index are members already.
    let channel = filter
        .channel
        .as_deref()
        .filter(|_| filter.include.is_some());
    candidates
        .into_iter()
        .filter(|(_, s)| {
            !exclude.contains(&s.local)
                && scope.is_none_or(|b| *s.backend == *b)
                && filter.matches(&s.backend, &s.path, s.subprotocol.as_deref())
                && channel.is_none_or(|c| s.with_channels(|m| m.iter().any(|m| &**m == c)))
        })
        .collect()
}

/// Applies `op` to the matching sessions of this worker.
fn apply(env: &Env, op: &Op, tally: &Arc<Tally>) -> Outcome {
    let mut o = Outcome::default();
    let limit = usize::try_from(env.cfg().ws_send_queue).unwrap_or(usize::MAX);
    for (handle, session) in select(env, &op.filter, op.scope.as_deref()) {
        o.matched += 1;
        match &op.kind {
            OpKind::Publish { frame } => match session.enqueue(frame, limit) {
                Enqueued::Queued => o.delivered += 1,
                Enqueued::Skipped => o.skipped += 1,
                Enqueued::Overflow => {
                    o.dropped += 1;
                    session.track.note(1008, ClosedBy::Balancer);
                    handle.push(ConnCommand::CloseWith(1008, Rc::from("slow consumer")));
                }
            },
            OpKind::Ping { .. } => {
                if session.tunnel || session.is_closing() {
                    o.skipped += 1;
                } else {
                    let payload = session.arm_ping(tally.clone());
                    handle.push(ConnCommand::Ping(payload));
                    o.delivered += 1;
                }
            }
            OpKind::Close { code, reason } => {
                if session.is_closing() {
                    o.skipped += 1;
                } else {
                    session.close_outbox();
                    session.track.note(*code, ClosedBy::Balancer);
                    handle.push(ConnCommand::CloseWith(*code, Rc::from(reason.as_str())));
                    o.delivered += 1;
                }
            }
            OpKind::Subscribe { channels, join } => {
                for name in channels {
                    if *join {
                        env.channels.join(&session, name);
                    } else {
                        env.channels.leave(&session, name);
                    }
                }
                o.delivered += 1;
            }
        }
    }
    o
}

/// Describes this worker's sessions matching `filter` (the first `limit`
/// by id) and counts all that match.
fn list(env: &Env, filter: &Filter, limit: usize) -> (Vec<SessionView>, u64) {
    let mut picked = select(env, filter, None);
    let matched = picked.len() as u64;
    picked.sort_by_key(|(_, s)| s.local);
    picked.truncate(limit);
    let views = picked
        .iter()
        .map(|(_, s)| {
            let (bytes_in, bytes_out) = s.track.bytes();
            let (messages_in, messages_out) = s.track.messages();
            SessionView {
                id: env.router.ids.format(s.local),
                client: s.peer.to_string(),
                backend: s.backend.to_string(),
                path: s.path.to_string(),
                subprotocol: s.subprotocol.as_deref().map(str::to_string),
                channels: s.with_channels(|m| m.iter().map(|c| c.to_string()).collect()),
                since_ms: s.since_ms(),
                mode: if s.tunnel { "tunnel" } else { "inspect" },
                messages_in,
                messages_out,
                bytes_in,
                bytes_out,
                queued_bytes: s.queued() as u64,
                local: s.local,
            }
        })
        .collect();
    (views, matched)
}
