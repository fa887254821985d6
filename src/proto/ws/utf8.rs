//! Incremental UTF-8 validation across frame and chunk boundaries.
//!
//! Uses `std::str::from_utf8` for the bulk and a 4-byte carry for a code point
//! split between chunks; fails as soon as a sequence can never become valid.

use super::WsError;

/// Validates a text message fed in arbitrary pieces.
#[derive(Clone, Debug, Default)]
pub struct Utf8Validator {
    carry: [u8; 4],
    carry_len: u8,
}

/// Length of the sequence introduced by a valid lead byte.
fn seq_len(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates the next piece. Fails fast on a byte sequence that no later
    /// input could complete into valid UTF-8.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), WsError> {
        if self.carry_len > 0 {
            let have = usize::from(self.carry_len);
            let need = seq_len(self.carry[0]) - have;
            let take = need.min(data.len());
            self.carry[have..have + take].copy_from_slice(&data[..take]);
            let total = have + take;
            data = &data[take..];
            match std::str::from_utf8(&self.carry[..total]) {
                Ok(_) => self.carry_len = 0,
                Err(e) if e.error_len().is_some() => return Err(WsError::InvalidUtf8),
                Err(_) => {
                    // Still incomplete: only possible when `data` ran out.
                    self.carry_len = total as u8;
                    return Ok(());
                }
            }
        }
        match std::str::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(WsError::InvalidUtf8),
            Err(e) => {
                let tail = &data[e.valid_up_to()..];
                self.carry[..tail.len()].copy_from_slice(tail);
                self.carry_len = tail.len() as u8;
                Ok(())
            }
        }
    }

    /// Checks that the message did not end inside a code point.
    pub fn finish(&self) -> Result<(), WsError> {
        if self.carry_len == 0 {
            Ok(())
        } else {
            Err(WsError::InvalidUtf8)
        }
    }

    /// Forgets any partial code point, ready for a new message.
    pub fn reset(&mut self) {
        self.carry_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(chunks: &[&[u8]]) -> Result<(), WsError> {
        let mut v = Utf8Validator::new();
        for c in chunks {
            v.feed(c)?;
        }
        v.finish()
    }

    #[test]
    fn valid_multibyte_split_at_every_byte_pair() {
        let text = "aé€𝄞 κόσμε 😀z".as_bytes();
        for i in 0..=text.len() {
            for j in i..=text.len() {
                assert_eq!(
                    pieces(&[&text[..i], &text[i..j], &text[j..]]),
                    Ok(()),
                    "{i} {j}"
                );
            }
        }
        // One byte at a time.
        let singles: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(pieces(&singles), Ok(()));
    }

    #[test]
    fn fails_fast_on_impossible_sequences() {
        for bad in [
            &[0xF5u8][..],
            &[0xC0, 0x80],
            &[0xED, 0xA0, 0x80],
            &[0xFF],
            &[0x80],
        ] {
            // Fails on the first feed that contains the bad bytes, split or not.
            let mut v = Utf8Validator::new();
            assert_eq!(v.feed(bad), Err(WsError::InvalidUtf8), "{bad:?}");
            let mut v = Utf8Validator::new();
            let r: Result<Vec<()>, _> = bad.chunks(1).map(|c| v.feed(c)).collect();
            assert_eq!(r, Err(WsError::InvalidUtf8), "{bad:?} bytewise");
        }
        // Surrogate prefix refused as soon as the second byte arrives.
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[b'a', 0xED]), Ok(()));
        assert_eq!(v.feed(&[0xA0]), Err(WsError::InvalidUtf8));
        // Autobahn 6.4.x style: valid prefix, then the bad byte mid-message.
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed("κόσμε".as_bytes()), Ok(()));
        assert_eq!(v.feed(&[0xF4, 0x90]), Err(WsError::InvalidUtf8));
        // Carry completed by an invalid continuation.
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xE2, 0x82]), Ok(()));
        assert_eq!(v.feed(b"xy"), Err(WsError::InvalidUtf8));
    }

    #[test]
    fn incomplete_at_finish() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[b'a', 0xE2, 0x82]), Ok(()));
        assert_eq!(v.finish(), Err(WsError::InvalidUtf8));
        v.reset();
        assert_eq!(v.finish(), Ok(()));
        assert_eq!(pieces(&[&[0xF0, 0x9D], &[0x84]]), Err(WsError::InvalidUtf8));
    }
}
