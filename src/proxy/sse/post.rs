//! The fallback's endpoints under `/_lb/`: `POST /_lb/sse/{token}` sends
//! one message to the session's backend (text, or binary for
//! `application/octet-stream`), `DELETE` closes the session (1000), and
//! `GET /_lb/client.js` serves the client library. Any worker answers: the
//! session is found by its token in the shared table.

use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent};

use crate::hub::sse::{Outgoing, PostError, SseToken};
use crate::proto::http::headers::header_values;
use crate::proto::http::{reply, BodyKind, Method, ParsedRequest};
use crate::proxy::env::Env;
use crate::proxy::ClientConn;

/// Serves `path` (a fallback endpoint) when it is one; `None` when it is
/// not ours. `Some(keep)`: whether the connection may carry another request.
pub(crate) async fn serve<S>(
    env: &Env,
    client: &mut ClientConn<S>,
    req: &ParsedRequest,
    path: &[u8],
) -> Option<bool>
where
    S: AsyncReadRent + AsyncWriteRent,
{
    if path == b"/_lb/client.js" {
        return Some(client_js(env, client, req).await);
    }
    let token = path.strip_prefix(b"/_lb/sse/")?;
    Some(session(env, client, req, token).await)
}

async fn client_js<S>(env: &Env, client: &mut ClientConn<S>, req: &ParsedRequest) -> bool
where
    S: AsyncReadRent + AsyncWriteRent,
{
    let idle = env.cfg().idle_timeout;
    if !matches!(req.method, Method::Get | Method::Head) || req.body != BodyKind::Empty {
        client.answer(400, idle).await;
        return false;
    }
    let keep = req.keep_alive && !env.draining.is_fired();
    let body = super::CLIENT_JS.as_bytes();
    let ctype = "application/javascript; charset=utf-8";
    let extra = [("Cache-Control", "no-cache")];
    let mut out = Vec::with_capacity(body.len() + 256);
    if req.method == Method::Head {
        reply::write_response_head(&mut out, 200, ctype, &extra, body.len(), keep);
    } else {
        reply::write_response(&mut out, 200, ctype, &extra, body, keep);
    }
    client.answered.set(200);
    client.buf.consume(req.head_len);
    client.writer(idle).write_vec(out).await.0.is_ok() && keep
}

/// `POST` or `DELETE` on a session.
async fn session<S>(
    env: &Env,
    client: &mut ClientConn<S>,
    req: &ParsedRequest,
    token: &[u8],
) -> bool
where
    S: AsyncReadRent + AsyncWriteRent,
{
    let cfg = env.cfg();
    let idle = cfg.idle_timeout;
    let shared = std::str::from_utf8(token)
        .ok()
        .and_then(SseToken::parse)
        .and_then(|t| env.router.sse.get(&t))
        .filter(|s| s.is_open());
    let Some(shared) = shared else {
        // Unknown or over; a body that is not read closes the connection.
        client.answer(404, idle).await;
        return false;
    };
    let msg = match req.method {
        Method::Delete if req.body == BodyKind::Empty => Outgoing::Close(1000),
        Method::Post => match read_body(env, client, req).await {
            Ok(body) => {
                let whole = req.head_len + body.len();
                let binary = header_values(&client.buf.data()[..req.head_len], b"content-type")
                    .next()
                    .is_some_and(|v| {
                        let media = v.split(|&b| b == b';').next().unwrap_or_default();
                        media
                            .trim_ascii()
                            .eq_ignore_ascii_case(b"application/octet-stream")
                    });
                client.buf.consume(whole);
                if binary {
                    Outgoing::Binary(body)
                } else if std::str::from_utf8(&body).is_ok() {
                    Outgoing::Text(body)
                } else {
                    return answer(client, req, 400, idle).await;
                }
            }
            Err(status) => {
                client.answer(status, idle).await;
                return false;
            }
        },
        Method::Delete => {
            client.answer(400, idle).await;
            return false;
        }
        _ => {
            client.answered.set(405);
            let mut out = Vec::new();
            let allow = [("Allow", "POST, DELETE")];
            reply::write_response(
                &mut out,
                405,
                "text/plain",
                &allow,
                b"method not allowed\n",
                false,
            );
            let _ = client.writer(idle).write_vec(out).await;
            return false;
        }
    };
    if matches!(msg, Outgoing::Close(_)) {
        client.buf.consume(req.head_len);
    }
    let status = match shared.post(
        msg,
        usize::try_from(cfg.ws_send_queue).unwrap_or(usize::MAX),
    ) {
        Ok(()) => 204,
        Err(PostError::Gone) => 404,
        Err(PostError::Busy) => 429,
    };
    answer(client, req, status, idle).await
}

/// Answers a request whose body was read whole: 204 with no body, or an
/// error that keeps the connection.
async fn answer<S>(
    client: &mut ClientConn<S>,
    req: &ParsedRequest,
    status: u16,
    idle: Duration,
) -> bool
where
    S: AsyncReadRent + AsyncWriteRent,
{
    client.answered.set(status);
    let keep = req.keep_alive;
    let mut out = Vec::with_capacity(128);
    if status == 204 {
        out.extend_from_slice(b"HTTP/1.1 204 No Content\r\n");
        if !keep {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
    } else {
        let body = match status {
            404 => &b"no such session\n"[..],
            429 => b"too many messages waiting for the backend\n",
            _ => b"message is not UTF-8 text\n",
        };
        reply::write_response(&mut out, status, "text/plain", &[], body, keep);
    }
    client.writer(idle).write_vec(out).await.0.is_ok() && keep
}

/// Reads the request body (at most `--max-message-size`) into an owned
/// message; head and body stay in the buffer. Errors are the status to
/// answer (the connection then closes).
async fn read_body<S>(
    env: &Env,
    client: &mut ClientConn<S>,
    req: &ParsedRequest,
) -> Result<Vec<u8>, u16>
where
    S: AsyncReadRent + AsyncWriteRent,
{
    let cfg = env.cfg();
    let len = match req.body {
        BodyKind::Empty => 0,
        BodyKind::Length(n) => n,
        // A message is sent whole: its length is known up front.
        _ => return Err(411),
    };
    if len > cfg.max_message_size {
        return Err(413);
    }
    let want = req.head_len + len as usize;
    let deadline = std::time::Instant::now() + cfg.client_body_timeout;
    while client.buf.len() < want {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let read = monoio::time::timeout(
            left.min(cfg.idle_timeout),
            client.buf.read_from(&mut client.r, 64 * 1024),
        );
        match read.await {
            Ok(Ok(n)) if n > 0 => {}
            Ok(_) => return Err(400),
            Err(_) => return Err(408),
        }
    }
    Ok(client.buf.data()[req.head_len..want].to_vec())
}
