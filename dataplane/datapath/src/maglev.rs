//! Maglev consistent hashing (Eisenbud et al., NSDI 2016): each backend gets
//! a pseudo-random permutation of the table's entries and the backends take
//! turns claiming their next preferred free entry. Adding or removing one of
//! N backends changes about 1/N of the entries, so about 1/N of new flows
//! move; established flows never move (they are in conntrack).
//!
//! Permutations come from a fixed hash (FNV-1a) of the backend's address and
//! port, so every node and every restart computes the same table.

use std::net::SocketAddrV4;

fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Final avalanche so nearby addresses give unrelated permutations.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

fn name(b: &SocketAddrV4) -> [u8; 6] {
    let ip = b.ip().octets();
    let port = b.port().to_be_bytes();
    [ip[0], ip[1], ip[2], ip[3], port[0], port[1]]
}

/// Whether `n` is prime (table sizes must be).
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2u32;
    while (d as u64) * (d as u64) <= n as u64 {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

/// Build a table of `size` entries (a prime) over `backends`; entry values are
/// indices into `backends`. Empty input gives an empty table.
pub fn table(backends: &[SocketAddrV4], size: u32) -> Vec<u32> {
    let m = size as u64;
    let n = backends.len();
    if n == 0 || m == 0 {
        return Vec::new();
    }
    // Order-independent: sort by name, remember the caller's index.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| name(&backends[i]));
    let perms: Vec<(u64, u64)> = order
        .iter()
        .map(|&i| {
            let nm = name(&backends[i]);
            let offset = fnv1a(0x5a5a_0001, &nm) % m;
            let skip = fnv1a(0xa5a5_0002, &nm) % (m - 1).max(1) + 1;
            (offset, skip)
        })
        .collect();
    let mut next = vec![0u64; n];
    let mut entries = vec![u32::MAX; size as usize];
    let mut filled = 0u64;
    'outer: loop {
        for (k, &(offset, skip)) in perms.iter().enumerate() {
            let mut c = (offset + next[k] * skip) % m;
            while entries[c as usize] != u32::MAX {
                next[k] += 1;
                c = (offset + next[k] * skip) % m;
            }
            entries[c as usize] = order[k] as u32;
            next[k] += 1;
            filled += 1;
            if filled == m {
                break 'outer;
            }
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn backends(n: u8) -> Vec<SocketAddrV4> {
        (1..=n)
            .map(|i| SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, i), 8080))
            .collect()
    }

    #[test]
    fn every_backend_gets_a_near_equal_share() {
        let b = backends(3);
        let t = table(&b, 1021);
        for i in 0..3 {
            let share = t.iter().filter(|&&e| e == i).count();
            assert!((300..=380).contains(&share), "backend {i} got {share} of 1021");
        }
    }

    #[test]
    fn removing_one_of_n_backends_moves_about_one_nth() {
        let b = backends(10);
        let before = table(&b, 1021);
        let mut fewer = b.clone();
        let gone = fewer.remove(4);
        let after = table(&fewer, 1021);
        let moved = before
            .iter()
            .zip(&after)
            .filter(|(x, y)| b[**x as usize] != fewer[**y as usize])
            .count();
        let owned_by_gone = before.iter().filter(|&&x| b[x as usize] == gone).count();
        // Entries of the removed backend must move; few others may.
        assert!(moved >= owned_by_gone);
        assert!(moved as f64 <= 1021.0 * 0.15, "moved {moved} of 1021 entries");
    }

    #[test]
    fn table_is_independent_of_input_order() {
        let b = backends(5);
        let mut r = b.clone();
        r.reverse();
        let t1: Vec<_> = table(&b, 251).iter().map(|&i| b[i as usize]).collect();
        let t2: Vec<_> = table(&r, 251).iter().map(|&i| r[i as usize]).collect();
        assert_eq!(t1, t2);
    }

    #[test]
    fn primes() {
        assert!(is_prime(1021) && is_prime(251) && !is_prime(1020) && !is_prime(1));
    }
}
