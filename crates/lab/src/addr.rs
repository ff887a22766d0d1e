//! Loopback address allocation: every lab gets its own block of 127.0.0.0/8, so the labs of
//! tests running in parallel processes never collide, and a lab never listens anywhere else.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};

use crate::LabError;

/// How many random blocks to try before giving up.
const ATTEMPTS: usize = 8;

/// Highest last octet used; .0 and .251-.255 are skipped so no address looks like a network
/// or broadcast address.
const LAST_OCTET_MAX: u8 = 250;

/// Returns true for addresses in 127.0.0.0/8, the only ones a lab may use.
pub(crate) fn is_loopback_block(a: Ipv4Addr) -> bool {
    a.octets()[0] == 127
}

/// Returns the `i`-th address of the block starting at `first`: the last octet runs up to
/// 250, then carries into the third octet (and the third into the second) starting again at 1.
///
/// # Errors
///
/// When `first` is outside 127.0.0.0/8 or does not end in 1..=250, or the block would run
/// past 127.255.255.250.
pub(crate) fn nth(first: Ipv4Addr, i: usize) -> Result<Ipv4Addr, LabError> {
    let [a, b, c, d] = first.octets();
    if !is_loopback_block(first) {
        return Err(LabError::NotLoopback(first));
    }
    if d == 0 || d > LAST_OCTET_MAX {
        return Err(LabError::BadFirstAddress(first));
    }
    let per_row = usize::from(LAST_OCTET_MAX);
    let k = (usize::from(b) * 256 + usize::from(c)) * per_row + usize::from(d) - 1 + i;
    let (row, d) = (k / per_row, k % per_row + 1);
    let too_large = || LabError::BlockTooLarge {
        first,
        count: i + 1,
    };
    if row >= 256 * 256 {
        return Err(too_large());
    }
    let (b, c, d) = (
        u8::try_from(row / 256).map_err(|_| too_large())?,
        u8::try_from(row % 256).map_err(|_| too_large())?,
        u8::try_from(d).map_err(|_| too_large())?,
    );
    Ok(Ipv4Addr::new(a, b, c, d))
}

/// Picks `count` consecutive addresses, each free on every one of `ports` (the first is the
/// one clients use): from `first` when given, else from a random block `127.A.B.1` (A in
/// 100..=250), trying other blocks when one is in use.
///
/// # Errors
///
/// When `first` is unusable or busy, or no random block was free.
pub(crate) fn allocate(
    count: usize,
    ports: &[u16],
    first: Option<Ipv4Addr>,
) -> Result<Vec<Ipv4Addr>, LabError> {
    if let Some(first) = first {
        return block(first, count, ports)?
            .map_err(|(address, port)| LabError::AddressInUse { address, port });
    }
    for _ in 0..ATTEMPTS {
        if let Ok(addresses) = block(random_first(count), count, ports)? {
            return Ok(addresses);
        }
    }
    Err(LabError::NoFreeBlock {
        count,
        port: ports.first().copied().unwrap_or_default(),
        attempts: ATTEMPTS,
    })
}

/// A random first address whose block of `count` stays inside 127.100.0.1..=127.255.255.250.
fn random_first(count: usize) -> Ipv4Addr {
    let r = random_u64();
    let a = 100 + (r % 151) as u8;
    // Leave room for the block to carry into later rows without leaving 127/8.
    let rows_needed = count.div_ceil(usize::from(LAST_OCTET_MAX));
    let b_max = 256usize.saturating_sub(rows_needed).max(1);
    let b = ((r >> 16) % b_max as u64) as u8;
    Ipv4Addr::new(127, a, b, 1)
}

/// The block of `count` addresses from `first`, or `Err((address, port))` naming the first
/// busy one. Each `address:port` is checked by binding it and letting go at once.
fn block(
    first: Ipv4Addr,
    count: usize,
    ports: &[u16],
) -> Result<Result<Vec<Ipv4Addr>, (Ipv4Addr, u16)>, LabError> {
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let address = nth(first, i)?;
        // nth never leaves 127/8 for a 127/8 start; this is the lab's promise, so check anyway.
        if !is_loopback_block(address) {
            return Err(LabError::NotLoopback(address));
        }
        for &port in ports {
            if TcpListener::bind(SocketAddrV4::new(address, port)).is_err() {
                return Ok(Err((address, port)));
            }
        }
        out.push(address);
    }
    Ok(Ok(out))
}

/// Randomness good enough to spread labs over blocks: std's per-process random hash keys,
/// mixed with the pid and the clock, with no extra dependency.
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn case(first: [u8; 4], i: usize, expected: [u8; 4]) {
        assert_eq!(
            nth(Ipv4Addr::from(first), i).unwrap(),
            Ipv4Addr::from(expected)
        );
    }

    #[test]
    fn nth_counts_up_and_carries_past_250() {
        case([127, 100, 0, 1], 0, [127, 100, 0, 1]);
        case([127, 100, 0, 1], 249, [127, 100, 0, 250]);
        case([127, 100, 0, 1], 250, [127, 100, 1, 1]);
        case([127, 100, 255, 250], 1, [127, 101, 0, 1]);
        case([127, 0, 0, 11], 2, [127, 0, 0, 13]);
    }

    #[test]
    fn nth_never_leaves_loopback() {
        assert!(matches!(
            nth(Ipv4Addr::new(127, 255, 255, 250), 1),
            Err(LabError::BlockTooLarge { .. })
        ));
        assert!(matches!(
            nth(Ipv4Addr::new(128, 0, 0, 1), 0),
            Err(LabError::NotLoopback(_))
        ));
    }

    #[test]
    fn allocate_refuses_addresses_outside_loopback() {
        for a in [
            [10, 0, 0, 1],
            [192, 168, 1, 1],
            [0, 0, 0, 0],
            [126, 255, 255, 250],
        ] {
            let err = allocate(1, &[2222], Some(Ipv4Addr::from(a))).unwrap_err();
            assert!(matches!(err, LabError::NotLoopback(_)), "{a:?}: {err}");
            assert!(err.to_string().contains("outside 127.0.0.0/8"), "{err}");
        }
    }

    #[test]
    fn allocate_refuses_first_address_ending_outside_1_to_250() {
        for d in [0, 251, 255] {
            let err = allocate(1, &[2222], Some(Ipv4Addr::new(127, 1, 2, d))).unwrap_err();
            assert!(matches!(err, LabError::BadFirstAddress(_)), "{err}");
        }
    }

    #[test]
    fn allocate_from_explicit_first_address() {
        let got = allocate(3, &[40_001], Some(Ipv4Addr::new(127, 99, 7, 249))).unwrap();
        let want: Vec<Ipv4Addr> = [[127, 99, 7, 249], [127, 99, 7, 250], [127, 99, 8, 1]]
            .into_iter()
            .map(Ipv4Addr::from)
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn allocate_reports_a_busy_explicit_block() {
        let busy = TcpListener::bind("127.98.0.2:0").unwrap();
        let port = busy.local_addr().unwrap().port();
        let err = allocate(3, &[port], Some(Ipv4Addr::new(127, 98, 0, 1))).unwrap_err();
        assert!(
            matches!(err, LabError::AddressInUse { address, .. } if address == Ipv4Addr::new(127, 98, 0, 2)),
            "{err}"
        );
        // Every port asked for is checked: here the second.
        let err = allocate(
            3,
            &[port.wrapping_sub(1), port],
            Some(Ipv4Addr::new(127, 98, 0, 1)),
        )
        .unwrap_err();
        assert!(
            matches!(err, LabError::AddressInUse { address, port: p } if address == Ipv4Addr::new(127, 98, 0, 2) && p == port),
            "{err}"
        );
    }

    #[test]
    fn random_blocks_stay_in_loopback() {
        for count in [1, 3, 251, 1000] {
            for _ in 0..20 {
                let addrs = allocate(count, &[40_002], None).unwrap();
                assert_eq!(addrs.len(), count);
                assert!(addrs.iter().all(|a| is_loopback_block(*a)
                    && (100..=250).contains(&a.octets()[1])
                    && (1..=250).contains(&a.octets()[3])));
            }
        }
    }
}
