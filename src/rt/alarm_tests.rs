//! The shared alarms: order, timing, re-arming for an earlier deadline,
//! and entries removed with their futures.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use monoio::time::Instant;

use super::{sleep_until, TABLE};

fn run<F: std::future::Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn entries() -> usize {
    TABLE.with(|t| t.borrow().due.len())
}

#[test]
fn alarms_fire_in_deadline_order_and_not_early() {
    let order = run(async {
        let start = Instant::now();
        let order = Rc::new(RefCell::new(Vec::new()));
        let mut tasks = Vec::new();
        for ms in [60u64, 20, 40] {
            let order = order.clone();
            tasks.push(monoio::spawn(async move {
                sleep_until(start + Duration::from_millis(ms)).await;
                let waited = start.elapsed();
                order.borrow_mut().push((ms, waited));
            }));
        }
        for t in tasks {
            t.await;
        }
        assert_eq!(entries(), 0);
        let out = order.borrow().clone();
        out
    });
    let ms: Vec<u64> = order.iter().map(|(ms, _)| *ms).collect();
    assert_eq!(ms, [20, 40, 60]);
    for (ms, waited) in order {
        assert!(
            waited + Duration::from_millis(1) >= Duration::from_millis(ms),
            "{ms} ms alarm after {waited:?}"
        );
    }
}

#[test]
fn an_earlier_alarm_rearms_the_shared_timer() {
    let waited = run(async {
        let start = Instant::now();
        let late = monoio::spawn(async move {
            sleep_until(start + Duration::from_secs(3)).await;
        });
        monoio::time::sleep(Duration::from_millis(10)).await;
        // The driver now sleeps for the late one.
        sleep_until(Instant::now() + Duration::from_millis(20)).await;
        let waited = start.elapsed();
        drop(late);
        waited
    });
    assert!(waited < Duration::from_millis(1000), "{waited:?}");
}

#[test]
fn a_dropped_alarm_leaves_no_entry() {
    run(async {
        let far = Instant::now() + Duration::from_secs(60);
        let mut a = Box::pin(sleep_until(far));
        let polled = monoio::time::timeout(Duration::from_millis(5), a.as_mut()).await;
        assert!(polled.is_err(), "a 60 s alarm fired");
        assert_eq!(entries(), 1);
        drop(a);
        assert_eq!(entries(), 0);
        // A past deadline is ready at once, with no entry.
        sleep_until(Instant::now()).await;
        assert_eq!(entries(), 0);
    });
}
