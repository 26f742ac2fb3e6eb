//! Internet checksum arithmetic (RFC 1071/1624) for programs that write
//! packet memory directly (XDP) or build packets (reject replies). Values are
//! raw 16/32-bit words as they sit in packet memory: one's-complement sums do
//! not depend on byte order as long as all words are read the same way.

#[inline(always)]
fn fold(mut s: u32) -> u16 {
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// New checksum after a 32-bit word of the covered data changed from `from` to `to`.
#[inline(always)]
pub fn replace4(check: u16, from: u32, to: u32) -> u16 {
    let nf = !from;
    let s = (!check) as u32 + (nf & 0xffff) + (nf >> 16) + (to & 0xffff) + (to >> 16);
    !fold(s)
}

/// New checksum after a 16-bit word of the covered data changed from `from` to `to`.
#[inline(always)]
pub fn replace2(check: u16, from: u16, to: u16) -> u16 {
    let s = (!check) as u32 + (!from) as u32 + to as u32;
    !fold(s)
}

/// One's-complement sum of `N` bytes (N even), not yet folded or inverted.
#[inline(always)]
pub fn sum<const N: usize>(bytes: &[u8; N], mut acc: u32) -> u32 {
    let mut i = 0;
    while i + 1 < N {
        acc += u16::from_ne_bytes([bytes[i], bytes[i + 1]]) as u32;
        i += 2;
    }
    acc
}

/// Final checksum of an accumulated sum.
#[inline(always)]
pub fn finish(acc: u32) -> u16 {
    !fold(acc)
}
