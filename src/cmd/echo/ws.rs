//! The echo backend's WebSocket side, on the crate's own codec: text and
//! binary messages echoed (fragmented ones reassembled), pings answered,
//! close echoed with its code; protocol errors closed with the right code.
//! A session opened on `/headers` first sends one text message: the
//! backend's name on a line, then the upgrade request head it received.
//! A session that asks for channels (`?subscribe=a,b` or `X-Wslb-Subscribe`)
//! gets them named in the 101's `X-Wslb-Channels` (see `subscribe`).

use monoio::io::AsyncWriteRent;
use monoio::net::TcpStream;

use wslb::proto::http::ParsedRequest;
use wslb::proto::ws::close::{parse_close_payload, write_close_frame};
use wslb::proto::ws::frame::{write_frame, FrameLimits, OpCode};
use wslb::proto::ws::handshake::{accept_key, write_server_response};
use wslb::proto::ws::message::MessageReader;
use wslb::proto::ws::scanner::ScannerConfig;
use wslb::rt::io::{write_vec, ReadBuf};

const MAX_MESSAGE: u64 = 64 << 20;

pub async fn serve(mut stream: TcpStream, mut buf: ReadBuf, req: &ParsedRequest, name: &str) {
    let key = req.ws_key.clone().map(|r| buf.data()[r].to_vec());
    let mut out = Vec::with_capacity(16 * 1024);
    let Some(key) = key else {
        let _ = write_vec(&mut stream, wslb::proto::http::error_response(400).to_vec()).await;
        return;
    };
    let accept = accept_key(&key);
    write_server_response(&mut out, &accept, None, None);
    if let Some(channels) = super::subscribe::channels_header(&buf.data()[..req.head_len]) {
        // Reopen the head (drop its final blank line) for one more header.
        out.truncate(out.len() - 2);
        out.extend_from_slice(b"X-Wslb-Channels: ");
        out.extend_from_slice(channels.as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
    }
    let target = &buf.data()[req.path.clone()];
    if target.split(|&b| b == b'?').next() == Some(b"/headers") {
        let mut hello = format!("{name}\n").into_bytes();
        hello.extend_from_slice(&buf.data()[..req.head_len]);
        let hello = String::from_utf8_lossy(&hello).into_owned();
        write_frame(&mut out, true, OpCode::Text, None, hello.as_bytes());
    }
    buf.consume(req.head_len);
    let (res, o) = write_vec(&mut stream, out).await;
    out = o;
    if res.is_err() {
        return;
    }
    let mut reader = MessageReader::new(ScannerConfig {
        limits: FrameLimits {
            max_payload: MAX_MESSAGE,
            rsv_allowed: 0,
            expect_masked: Some(true),
        },
        max_message: MAX_MESSAGE,
        validate_utf8: true,
    });
    loop {
        out.clear();
        let mut closing = false;
        loop {
            match reader.feed(buf.data()) {
                Ok((used, msg)) => {
                    buf.consume(used);
                    let Some(msg) = msg else {
                        if used == 0 {
                            break;
                        }
                        continue;
                    };
                    match msg.opcode {
                        OpCode::Text | OpCode::Binary => {
                            write_frame(&mut out, true, msg.opcode, None, &msg.payload)
                        }
                        OpCode::Ping => {
                            write_frame(&mut out, true, OpCode::Pong, None, &msg.payload)
                        }
                        OpCode::Pong | OpCode::Continuation => {}
                        OpCode::Close => {
                            match parse_close_payload(&msg.payload) {
                                Ok(Some((code, _))) => write_close_frame(&mut out, code, "", None),
                                Ok(None) => write_frame(&mut out, true, OpCode::Close, None, &[]),
                                Err(e) => write_close_frame(&mut out, e.close_code(), "", None),
                            }
                            closing = true;
                            break;
                        }
                    }
                }
                Err(e) => {
                    write_close_frame(&mut out, e.close_code(), "", None);
                    closing = true;
                    break;
                }
            }
        }
        if !out.is_empty() {
            let (res, o) = write_vec(&mut stream, std::mem::take(&mut out)).await;
            out = o;
            if res.is_err() {
                return;
            }
        }
        if closing {
            let _ = stream.shutdown().await;
            // Wait briefly for the client to close its side.
            let _ = monoio::time::timeout(
                std::time::Duration::from_secs(2),
                buf.read_from(&mut stream, 1024),
            )
            .await;
            return;
        }
        match buf.read_from(&mut stream, 64 * 1024).await {
            Ok(n) if n > 0 => {}
            _ => return,
        }
    }
}
