//! `wslb bench http`: keep-alive GET loops, closed-loop (as fast as each
//! connection can go) or open-loop at a constant rate with latency measured
//! from the intended send time (coordinated omission corrected, as wrk2 does).

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::conn::{Conn, Failure};
use super::response::{parse_head, BodySkipper};
use super::runner::{Pacer, Worker};
use super::stats::ErrorKind;
use super::url::Target;

/// Settings shared by every HTTP connection task.
#[derive(Debug, Clone)]
pub struct HttpJob {
    /// Where to connect.
    pub target: Target,
    /// Total requests per second over all connections, if open-loop.
    pub rate: Option<f64>,
    /// Total connections (to split the rate).
    pub connections: usize,
    /// Connect timeout.
    pub timeout: Duration,
}

/// Run this thread's share of connections.
pub async fn thread_main(job: Rc<HttpJob>, worker: Worker) {
    let worker = Rc::new(worker);
    let mut tasks = Vec::new();
    for (slot, _) in worker.conns.clone().enumerate() {
        tasks.push(monoio::spawn(conn_main(
            Rc::clone(&job),
            Rc::clone(&worker),
            slot,
        )));
    }
    for t in tasks {
        t.await;
    }
}

async fn conn_main(job: Rc<HttpJob>, w: Rc<Worker>, slot: usize) {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: wslb-bench\r\n\r\n",
        job.target.path, job.target.host
    )
    .into_bytes();
    let mut pacer = Pacer::new(job.rate, job.connections);
    while !w.stop.is_fired() {
        let mut conn = match w
            .stop
            .or_stop(slot, Conn::connect(job.target.addr, job.timeout))
            .await
        {
            None => return,
            Some(Ok(c)) => c,
            Some(Err(kind)) => {
                w.err(kind);
                // Avoid spinning on a refused port.
                w.stop
                    .sleep_until(slot, Instant::now() + Duration::from_millis(10))
                    .await;
                continue;
            }
        };
        conn.wbuf.extend_from_slice(&request);
        w.stats.borrow_mut().connects += 1;
        w.shared.open.fetch_add(1, Ordering::Relaxed);
        loop {
            let Some(began) = pacer.wait(&w.stop, slot).await else {
                break;
            };
            let result = exchange(&mut conn, &w, slot).await;
            w.flush_bytes(&mut conn);
            match result {
                Ok(keep) => {
                    w.op(began.elapsed());
                    if !keep {
                        break;
                    }
                }
                Err(Failure::Stopped) => break,
                Err(Failure::Error(kind)) => {
                    w.err(kind);
                    break;
                }
            }
        }
        w.shared.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Send one request and read its response; `Ok(false)` if the server closes.
async fn exchange(conn: &mut Conn, w: &Worker, slot: usize) -> Result<bool, Failure> {
    match w.stop.or_stop(slot, conn.send()).await {
        None => return Err(Failure::Stopped),
        Some(Err(_)) => return Err(Failure::Error(ErrorKind::Write)),
        Some(Ok(())) => {}
    }
    let mut body: Option<(BodySkipper, bool, u16)> = None;
    loop {
        if body.is_none() {
            match parse_head(conn.pending()) {
                Err(_) => break Err(Failure::Error(ErrorKind::Protocol)),
                Ok(Some(head)) => {
                    conn.consume(head.len);
                    if (100..200).contains(&head.status) && head.status != 101 {
                        continue; // interim response; the final one follows
                    }
                    body = Some((BodySkipper::new(head.framing), head.close, head.status));
                }
                Ok(None) => {}
            }
        }
        if let Some((skipper, close, status)) = body.as_mut() {
            match skipper.feed(conn.pending()) {
                Ok(n) => conn.consume(n),
                Err(_) => break Err(Failure::Error(ErrorKind::Protocol)),
            }
            if skipper.done() {
                if !(200..400).contains(status) {
                    w.err(ErrorKind::Status);
                }
                break Ok(!*close);
            }
        }
        match w.stop.or_stop(slot, conn.fill()).await {
            None => break Err(Failure::Stopped),
            Some(Err(_)) => break Err(Failure::Error(ErrorKind::Read)),
            Some(Ok(0)) => {
                // EOF ends a read-until-close body; anywhere else it is an error.
                let until_close = body.as_ref().is_some_and(|(s, _, _)| s.until_close());
                break if until_close {
                    Ok(false)
                } else {
                    Err(Failure::Error(ErrorKind::Closed))
                };
            }
            Some(Ok(_)) => {}
        }
    }
}
