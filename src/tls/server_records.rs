//! Record-level helpers of the unbuffered server core: encode rustls'
//! handshake messages, encrypt application data and close_notify into a
//! growing buffer, and copy plaintext into a reader's spare room.

use std::mem::MaybeUninit;

use rustls::server::ServerConnectionData;
use rustls::unbuffered::{
    EncodeError, EncodeTlsData, EncryptError, InsufficientSizeError, WriteTraffic,
};

/// Record expansion budgeted per record when encrypting (header, nonce,
/// tag, content type); rustls says so when more is needed.
const RECORD_OVERHEAD: usize = 64;
/// Plaintext per record (rustls' default fragment size).
const RECORD_PLAINTEXT: usize = 16 * 1024;

/// Appends the handshake record rustls hands over to `out`.
pub(super) fn encode_into(encode: &mut EncodeTlsData<'_, ServerConnectionData>, out: &mut Vec<u8>) {
    let at = out.len();
    let mut want = 1024;
    loop {
        out.resize(at + want, 0);
        match encode.encode(&mut out[at..]) {
            Ok(n) => {
                out.truncate(at + n);
                return;
            }
            Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
                want = required_size
            }
            Err(EncodeError::AlreadyEncoded) => {
                out.truncate(at);
                return;
            }
        }
    }
}

/// What to do once rustls allows application data.
#[derive(Clone, Copy)]
pub(super) enum Then<'a> {
    Nothing,
    Encrypt(&'a [u8]),
    CloseNotify,
}

type ServerTraffic<'c> = WriteTraffic<'c, ServerConnectionData>;

/// Appends close_notify to `out`.
pub(super) fn queue_close_notify(
    traffic: &mut ServerTraffic<'_>,
    out: &mut Vec<u8>,
) -> Result<(), rustls::Error> {
    let at = out.len();
    out.resize(at + 64, 0);
    match traffic.queue_close_notify(&mut out[at..]) {
        Ok(n) => {
            out.truncate(at + n);
            Ok(())
        }
        Err(_) => {
            out.truncate(at);
            Err(rustls::Error::EncryptError)
        }
    }
}

/// Encrypts `data` into the end of `out`, growing it as rustls asks.
pub(super) fn encrypt_into(
    traffic: &mut ServerTraffic<'_>,
    data: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), rustls::Error> {
    if data.is_empty() {
        return Ok(());
    }
    let at = out.len();
    let records = data.len().div_ceil(RECORD_PLAINTEXT);
    let mut want = data.len() + records * RECORD_OVERHEAD;
    loop {
        out.resize(at + want, 0);
        match traffic.encrypt(data, &mut out[at..]) {
            Ok(n) => {
                out.truncate(at + n);
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
                want = required_size;
            }
            Err(EncryptError::EncryptExhausted) => {
                out.truncate(at);
                return Err(rustls::Error::EncryptError);
            }
        }
    }
}

/// Copies as much of `src` as fits into `dst[at..]`; returns how much.
pub(super) fn put(dst: &mut [MaybeUninit<u8>], at: usize, src: &[u8]) -> usize {
    let n = src.len().min(dst.len().saturating_sub(at));
    for (d, s) in dst[at..at + n].iter_mut().zip(&src[..n]) {
        d.write(*s);
    }
    n
}
