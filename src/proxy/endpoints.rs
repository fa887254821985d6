//! The balancer's own endpoints on the serving listeners: `/_lb/register`
//! (the backend control channel) and `/_lb/pick` (binding hand-out: the
//! chosen backend's address instead of a proxied connection), and with
//! `--fallback sse` the fallback's `/_lb/sse/{token}` and `/_lb/client.js`.

use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::backend::{pick, sticky_key, Tried};
use super::env::Env;
use super::hook_calls::with_request;
use super::ClientConn;
use crate::config::Fallback;
use crate::hooks::{Binding, Hooks};
use crate::pool::registry::binding::is_visible_ascii;
use crate::proto::http::{error_response, reply, BodyKind, Method, ParsedRequest};
use crate::proto::ws::handshake::check_upgrade_request;
use crate::proxy::control::{authorize, serve_channel};

/// Serves a `/_lb/` request (or anything on the control listener); returns
/// whether the client connection may carry another request.
pub(crate) async fn serve<S>(env: &Env, client: &mut ClientConn<S>, req: &ParsedRequest) -> bool
where
    S: AsyncReadRent + AsyncWriteRent,
{
    let idle = env.cfg().idle_timeout;
    let data = client.buf.data();
    let target = &data[req.path.clone()];
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    let query = target
        .iter()
        .position(|&b| b == b'?')
        .map(|i| &target[i + 1..])
        .unwrap_or_default();
    match path {
        b"/_lb/register" => {
            if !req.upgrade_websocket {
                client.answer(426, idle).await;
                return false;
            }
            if let Err(status) = authorize(env, data, req, client.control)
                .and_then(|()| check_upgrade_request(client.buf.data(), req))
            {
                client.answer(status, idle).await;
                return false;
            }
            let key = req
                .ws_key
                .clone()
                .map(|r| data[r].to_vec())
                .unwrap_or_default();
            client.answered.set(101);
            serve_channel(env, client, req, &key).await;
            false
        }
        b"/_lb/pick" if !client.control => {
            if !matches!(req.method, Method::Get | Method::Head) || req.body != BodyKind::Empty {
                client.answer(400, idle).await;
                return false;
            }
            let redirect = query
                .split(|&b| b == b'&')
                .any(|kv| kv == b"redirect=1" || kv == b"redirect=true");
            let key = sticky_key(&env.cfg().sticky, &data[..req.head_len], client.peer);
            let snap = env.pool.borrow_mut().current().clone();
            let keep = req.keep_alive && !env.draining.is_fired();
            // HEAD gets the head a GET would get (same Content-Length), no body.
            let head_only = req.method == Method::Head;
            let mut out = Vec::with_capacity(512);
            let respond =
                |out: &mut Vec<u8>, status, ctype, extra: &[(&str, &str)], body: &[u8], keep| {
                    if head_only {
                        reply::write_response_head(out, status, ctype, extra, body.len(), keep)
                    } else {
                        reply::write_response(out, status, ctype, extra, body, keep)
                    }
                };
            let now = crate::pool::clock::now_ms();
            let picked = pick(&env.picker, &snap, key, &Tried::default(), now);
            let written = match picked {
                Some((_, backend)) => {
                    let mut url = backend.primary_url().to_string();
                    if let Some(hooks) = &env.hooks {
                        url = on_pick(&**hooks, data, req, client, &backend.id, url);
                    }
                    // Bindings are checked at registration, a hook's answer
                    // only here: the last line before `Location`.
                    if !is_handout_url(&url) {
                        tracing::warn!(
                            url = url.escape_debug().to_string(),
                            "pick: binding refused"
                        );
                        out.extend_from_slice(error_response(500));
                        client.answered.set(500);
                        false
                    } else if redirect {
                        client.answered.set(307);
                        let location = [("Location", url.as_str())];
                        respond(&mut out, 307, "text/plain", &location, url.as_bytes(), keep)
                    } else {
                        client.answered.set(200);
                        let body = serde_json::json!({
                            "id": &*backend.id,
                            "url": url,
                            "bindings": backend.bindings.iter().map(|b| b.to_string()).collect::<Vec<_>>(),
                        })
                        .to_string();
                        respond(
                            &mut out,
                            200,
                            "application/json",
                            &[],
                            body.as_bytes(),
                            keep,
                        )
                    }
                }
                None => {
                    client.answered.set(503);
                    let body = br#"{"error":"no healthy backend"}"#;
                    respond(&mut out, 503, "application/json", &[], body, false);
                    false
                }
            };
            client.buf.consume(req.head_len);
            let ok = client.writer(idle).write_vec(out).await.0.is_ok();
            ok && keep && written
        }
        // Posts reach sessions still open after a reload turned the
        // fallback off; the client library only while it is on.
        _ if !client.control
            && (path.starts_with(b"/_lb/sse/") || env.cfg().fallback == Fallback::Sse) =>
        {
            let path = path.to_vec();
            match super::sse::serve_endpoint(env, client, req, &path).await {
                Some(keep) => keep,
                None => {
                    client.answer(404, idle).await;
                    false
                }
            }
        }
        _ => {
            client.answer(404, idle).await;
            false
        }
    }
}

/// Longest URL `/_lb/pick` hands out.
const MAX_HANDOUT_URL: usize = 2048;

/// Whether `url` may be handed out (JSON `url`, `Location`): non-empty,
/// bounded, visible ASCII only (nothing that can end a header line).
fn is_handout_url(url: &str) -> bool {
    !url.is_empty() && url.len() <= MAX_HANDOUT_URL && is_visible_ascii(url.as_bytes())
}

/// The URL `on_pick` hands out instead of `url` (the chosen backend's).
fn on_pick<S: AsyncWriteRent>(
    hooks: &dyn Hooks,
    data: &[u8],
    req: &ParsedRequest,
    client: &ClientConn<S>,
    id: &str,
    url: String,
) -> String {
    let binding = Binding {
        id: id.to_string(),
        url,
    };
    let raw = &data[..req.head_len];
    with_request(raw, client.peer, client.tls, |r| hooks.on_pick(r, binding))
        .map(|b| b.url)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::is_handout_url;

    #[test]
    fn only_clean_bounded_urls_are_handed_out() {
        assert!(is_handout_url("ws://10.0.0.1:9001/"));
        for bad in [
            "",
            "ws://a b",
            "ws://a\r\nSet-Cookie: x",
            "ws://\u{e9}",
            "ws://a\0",
        ] {
            assert!(!is_handout_url(bad), "{bad:?}");
        }
        assert!(!is_handout_url(&"x".repeat(MAX + 1)));
    }

    const MAX: usize = super::MAX_HANDOUT_URL;
}
