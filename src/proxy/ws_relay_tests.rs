//! The inspect relay's unit tests over scripted I/O.

use super::super::test_io::{close_code, run, Broken, Script, Sink};
use super::ready_tests::{client_scanner, session, up_side};
use super::*;

#[test]
fn a_failed_write_toward_the_backend_gets_the_client_1012() {
    // The client's message reaches a backend connection that is gone
    // before the backend's end of stream is read.
    let mut frame = Vec::new();
    crate::proto::ws::frame::write_frame(&mut frame, true, OpCode::Text, Some([1, 2, 3, 4]), b"hi");
    let session = session();
    let (end, to_client) = run(async {
        let scanner = client_scanner();
        let mut r = Script(frame);
        let mut buf = ReadBuf::with_capacity(1024);
        let to_backend = Outbound::new(Broken, true);
        let to_client = Outbound::new(Sink::default(), false);
        let end = pump(
            &mut r,
            &mut buf,
            &crate::rt::ready_read::ReadPool::default(),
            scanner,
            &to_backend,
            &to_client,
            None,
            &UP,
            up_side(&session),
        )
        .await;
        let sent = to_client.w.try_lock().map(|w| w.0.clone());
        (end, sent)
    });
    assert_eq!(end, End::Aborted);
    let to_client = to_client.expect("client writer free");
    assert_eq!(close_code(&to_client), Some(1012), "{to_client:?}");
}
