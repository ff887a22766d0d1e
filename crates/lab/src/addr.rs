//! Loopback address allocation: every lab gets its own block of 127.0.0.0/8, so labs of
//! parallel tests never collide.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};

use crate::LabError;

/// Returns true for addresses in 127.0.0.0/8, the only ones a lab may use.
pub(crate) fn is_loopback_block(a: Ipv4Addr) -> bool {
    a.octets()[0] == 127
}

/// The `i`-th address of a block starting at `first`: the last octet runs 1..=250 and then
/// carries into the third octet (so .0, .251-.255 are never used).
pub(crate) fn nth(first: Ipv4Addr, i: usize) -> Result<Ipv4Addr, LabError> {
    let [a, b, c, d] = first.octets();
    let start = (usize::from(b) * 256 + usize::from(c)) * 250 + usize::from(d.clamp(1, 250)) - 1;
    let k = start + i;
    let (bc, d) = (k / 250, k % 250 + 1);
    if bc >= 256 * 256 {
        return Err(LabError::Address(format!(
            "block from {first} runs out of 127.0.0.0/8"
        )));
    }
    let addr = Ipv4Addr::new(a, (bc / 256) as u8, (bc % 256) as u8, d as u8);
    if !is_loopback_block(addr) {
        return Err(LabError::Address(format!("{addr} is outside 127.0.0.0/8")));
    }
    Ok(addr)
}

/// Picks `n` consecutive free addresses: from `first` when given, else from a random block
/// (second octet 100..=250), retrying another block when one is in use.
pub(crate) fn allocate(
    n: usize,
    port: u16,
    first: Option<Ipv4Addr>,
) -> Result<Vec<Ipv4Addr>, LabError> {
    if let Some(f) = first {
        if !is_loopback_block(f) {
            return Err(LabError::Address(format!("{f} is outside 127.0.0.0/8")));
        }
        return block(f, n, port)?.ok_or_else(|| {
            LabError::Address(format!(
                "some of the {n} addresses from {f} port {port} are in use"
            ))
        });
    }
    for attempt in 0..20u64 {
        let r = random_u64(attempt);
        let f = Ipv4Addr::new(127, 100 + (r % 151) as u8, ((r >> 8) % 200) as u8, 1);
        if let Some(addrs) = block(f, n, port)? {
            return Ok(addrs);
        }
    }
    Err(LabError::Address(format!(
        "no free block of {n} addresses on port {port}"
    )))
}

fn block(first: Ipv4Addr, n: usize, port: u16) -> Result<Option<Vec<Ipv4Addr>>, LabError> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let a = nth(first, i)?;
        if TcpListener::bind(SocketAddrV4::new(a, port)).is_err() {
            return Ok(None);
        }
        out.push(a);
    }
    Ok(Some(out))
}

fn random_u64(salt: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(salt);
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nth_carries_and_skips_zero() {
        let f = Ipv4Addr::new(127, 100, 0, 1);
        assert_eq!(nth(f, 0).unwrap(), Ipv4Addr::new(127, 100, 0, 1));
        assert_eq!(nth(f, 249).unwrap(), Ipv4Addr::new(127, 100, 0, 250));
        assert_eq!(nth(f, 250).unwrap(), Ipv4Addr::new(127, 100, 1, 1));
        assert!(nth(Ipv4Addr::new(127, 255, 255, 250), 1).is_err());
    }

    #[test]
    fn refuses_addresses_outside_loopback() {
        assert!(allocate(1, 2222, Some(Ipv4Addr::new(10, 0, 0, 1))).is_err());
        assert!(allocate(1, 2222, Some(Ipv4Addr::new(192, 168, 1, 1))).is_err());
    }

    #[test]
    fn random_blocks_stay_in_loopback() {
        for _ in 0..20 {
            let addrs = allocate(3, 40000, None).unwrap();
            assert!(
                addrs
                    .iter()
                    .all(|a| is_loopback_block(*a) && a.octets()[1] >= 100)
            );
        }
    }
}
