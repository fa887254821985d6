//! The TLS 1.3 ticket store of `wslb bench http --handshakes --resume`.
//! rustls' own memory cache keeps at most 8 tickets per server, fewer than
//! the sessions a bench has in flight, so part of a "resumed" run would fall
//! back to full handshakes; this store keeps up to [`MAX_TICKETS`] and hands
//! out the newest first. One bench run talks to one server, so tickets are
//! not keyed by server name.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use rustls::client::{ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue};
use rustls::pki_types::ServerName;
use rustls::NamedGroup;

/// Most tickets kept; the oldest go first beyond it.
pub const MAX_TICKETS: usize = 4096;

/// Tickets and the key-exchange hint for the one server of a bench run.
#[derive(Debug, Default)]
pub struct BenchTicketStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    kx_hint: Option<NamedGroup>,
    tickets: VecDeque<Tls13ClientSessionValue>,
}

impl BenchTicketStore {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the queue half-updated: use it as is.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ClientSessionStore for BenchTicketStore {
    fn set_kx_hint(&self, _server_name: ServerName<'static>, group: NamedGroup) {
        self.state().kx_hint = Some(group);
    }

    fn kx_hint(&self, _server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.state().kx_hint
    }

    // The bench offers TLS 1.3 only: there are no TLS 1.2 sessions to keep.
    fn set_tls12_session(&self, _: ServerName<'static>, _: Tls12ClientSessionValue) {}

    fn tls12_session(&self, _: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        None
    }

    fn remove_tls12_session(&self, _: &ServerName<'static>) {}

    fn insert_tls13_ticket(
        &self,
        _server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        let mut state = self.state();
        if state.tickets.len() >= MAX_TICKETS {
            state.tickets.pop_front();
        }
        state.tickets.push_back(value);
    }

    fn take_tls13_ticket(
        &self,
        _server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        self.state().tickets.pop_back()
    }
}
