//! RFC 6455 5.3 payload masking (XOR with a 4-byte key), a word at a time.
//!
//! `offset` is the position of `buf[0]` within the frame payload, so a payload
//! that arrives in pieces can be unmasked piece by piece.

/// Masks or unmasks `buf` in place; 64 bytes per step, then 8, then bytes.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let s = offset & 3;
    let k = [key[s], key[(s + 1) & 3], key[(s + 2) & 3], key[(s + 3) & 3]];
    let word = u64::from_ne_bytes([k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]]);
    // Every chunk length below is a multiple of 4, so the key phase is the
    // same at the start of each chunk and of the tail.
    let mut blocks = buf.chunks_exact_mut(64);
    for block in &mut blocks {
        for c in block.chunks_exact_mut(8) {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            c.copy_from_slice(&(u64::from_ne_bytes(a) ^ word).to_ne_bytes());
        }
    }
    let mut words = blocks.into_remainder().chunks_exact_mut(8);
    for c in &mut words {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(a) ^ word).to_ne_bytes());
    }
    for (i, b) in words.into_remainder().iter_mut().enumerate() {
        *b ^= k[i & 3];
    }
}

/// The byte-at-a-time reference implementation the tests compare against.
#[cfg(test)]
pub(crate) fn apply_mask_naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(offset + i) & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_length_offset_and_alignment() {
        let key = [0x12, 0x34, 0x56, 0x78];
        let src: Vec<u8> = (0..320u32).map(|i| (i * 31 + 7) as u8).collect();
        for start in 0..8 {
            for len in 0..=300 {
                for offset in 0..8 {
                    let mut a = src.clone();
                    let mut b = src.clone();
                    apply_mask(&mut a[start..start + len], key, offset);
                    apply_mask_naive(&mut b[start..start + len], key, offset);
                    assert_eq!(a, b, "start {start} len {len} offset {offset}");
                }
            }
        }
    }

    #[test]
    fn piecewise_equals_whole() {
        let key = [1, 2, 3, 4];
        let mut whole: Vec<u8> = (0..=255).collect();
        let mut parts = whole.clone();
        apply_mask(&mut whole, key, 0);
        let (a, rest) = parts.split_at_mut(13);
        let (b, c) = rest.split_at_mut(70);
        apply_mask(a, key, 0);
        apply_mask(b, key, 13);
        apply_mask(c, key, 83);
        assert_eq!(whole, parts);
        assert_ne!(whole, (0..=255).collect::<Vec<u8>>());
    }

    proptest! {
        #[test]
        fn matches_naive(data in proptest::collection::vec(any::<u8>(), 0..=300),
                         start in 0usize..8, key in any::<[u8; 4]>(), offset in 0usize..8) {
            let start = start.min(data.len());
            let mut a = data.clone();
            let mut b = data;
            apply_mask(&mut a[start..], key, offset);
            apply_mask_naive(&mut b[start..], key, offset);
            prop_assert_eq!(a, b);
        }
    }
}
