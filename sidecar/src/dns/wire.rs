//! The DNS message format, as much as a stub resolver needs (RFC 1035 §4, RFC 3596 AAAA,
//! RFC 6891 EDNS0): build one query, read the address records of its answer.

use std::net::IpAddr;
use std::time::Duration;

/// Record type A (IPv4 address).
pub const TYPE_A: u16 = 1;
/// Record type AAAA (IPv6 address).
pub const TYPE_AAAA: u16 = 28;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;
/// The UDP payload size the query advertises (EDNS0) and the receive buffer's size.
pub const MAX_UDP_PAYLOAD: usize = 4096;
const HEADER_LEN: usize = 12;
/// Compression pointers followed per name before the message is called malformed.
const MAX_POINTERS: usize = 16;

/// What an answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Records of the asked type (possibly none: the name exists without them).
    Records {
        /// The addresses, in answer order.
        addrs: Vec<IpAddr>,
        /// The smallest TTL among them (0 when there are none).
        ttl: Duration,
    },
    /// NXDOMAIN.
    NoSuchName,
}

/// Why a datagram is not a usable answer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// The name cannot be queried (empty label, label over 63 bytes, name over 253).
    #[error("invalid name {0:?}")]
    BadName(String),
    /// The datagram answers another query (a stray or late reply).
    #[error("answer to another query")]
    OtherId,
    /// Shorter than its own counts and lengths say, or with a pointer loop.
    #[error("malformed answer")]
    Malformed,
    /// The server set TC: the answer did not fit (TCP is not used).
    #[error("answer truncated")]
    Truncated,
    /// The server answered with an error code other than NXDOMAIN.
    #[error("server answered rcode {0}")]
    Rcode(u8),
}

/// A recursive query for `name`'s `qtype` records with message id `id`, advertising an
/// EDNS0 UDP payload size of [`MAX_UDP_PAYLOAD`].
///
/// # Errors
/// [`WireError::BadName`] for names that cannot be encoded.
pub fn query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, WireError> {
    let bad = || WireError::BadName(name.to_owned());
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() || trimmed.len() > 253 {
        return Err(bad());
    }
    let mut q = Vec::with_capacity(HEADER_LEN + trimmed.len() + 2 + 4 + 11);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    q.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    q.extend_from_slice(&0u16.to_be_bytes()); // ANCOUNT
    q.extend_from_slice(&0u16.to_be_bytes()); // NSCOUNT
    q.extend_from_slice(&1u16.to_be_bytes()); // ARCOUNT: the OPT record
    for label in trimmed.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(bad());
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    // OPT: root name, type 41, class = UDP payload size, TTL 0, no options.
    q.push(0);
    q.extend_from_slice(&TYPE_OPT.to_be_bytes());
    q.extend_from_slice(&(MAX_UDP_PAYLOAD as u16).to_be_bytes());
    q.extend_from_slice(&0u32.to_be_bytes());
    q.extend_from_slice(&0u16.to_be_bytes());
    Ok(q)
}

/// Reads the answer to query `id` for `qtype` records: the addresses of every answer record
/// of that type (CNAME records of the chain are passed over) and their smallest TTL.
///
/// # Errors
/// [`WireError`] when the datagram is not a usable answer to that query.
pub fn parse_response(msg: &[u8], id: u16, qtype: u16) -> Result<Answer, WireError> {
    if msg.len() < HEADER_LEN {
        return Err(WireError::Malformed);
    }
    if u16::from_be_bytes([msg[0], msg[1]]) != id || msg[2] & 0x80 == 0 {
        return Err(WireError::OtherId);
    }
    if msg[2] & 0x02 != 0 {
        return Err(WireError::Truncated);
    }
    match msg[3] & 0x0f {
        0 => {}
        3 => return Ok(Answer::NoSuchName),
        rcode => return Err(WireError::Rcode(rcode)),
    }
    let qdcount = u16::from_be_bytes([msg[4], msg[5]]);
    let ancount = u16::from_be_bytes([msg[6], msg[7]]);
    let mut at = HEADER_LEN;
    for _ in 0..qdcount {
        at = skip_name(msg, at)? + 4;
    }
    let mut addrs = Vec::new();
    let mut ttl = u32::MAX;
    for _ in 0..ancount {
        at = skip_name(msg, at)?;
        let fixed = msg.get(at..at + 10).ok_or(WireError::Malformed)?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let class = u16::from_be_bytes([fixed[2], fixed[3]]);
        let rttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
        let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        at += 10;
        let rdata = msg.get(at..at + rdlen).ok_or(WireError::Malformed)?;
        at += rdlen;
        if rtype != qtype || class != CLASS_IN {
            continue;
        }
        let addr = match rdata.len() {
            4 if rtype == TYPE_A => IpAddr::from(<[u8; 4]>::try_from(rdata).unwrap_or_default()),
            16 if rtype == TYPE_AAAA => {
                IpAddr::from(<[u8; 16]>::try_from(rdata).unwrap_or_default())
            }
            _ => return Err(WireError::Malformed),
        };
        ttl = ttl.min(rttl);
        addrs.push(addr);
    }
    let ttl = if addrs.is_empty() { 0 } else { ttl };
    Ok(Answer::Records {
        addrs,
        ttl: Duration::from_secs(u64::from(ttl)),
    })
}

/// The offset just past the (possibly compressed) name at `at`.
fn skip_name(msg: &[u8], mut at: usize) -> Result<usize, WireError> {
    let mut pointers = 0;
    loop {
        let len = *msg.get(at).ok_or(WireError::Malformed)?;
        match len {
            0 => return Ok(at + 1),
            l if l & 0xc0 == 0xc0 => {
                // A pointer ends the name here; the target is not needed to skip it, only
                // checked to be inside the message.
                let target = usize::from(u16::from_be_bytes([
                    l & 0x3f,
                    *msg.get(at + 1).ok_or(WireError::Malformed)?,
                ]));
                pointers += 1;
                if target >= msg.len() || pointers > MAX_POINTERS {
                    return Err(WireError::Malformed);
                }
                return Ok(at + 2);
            }
            l if l & 0xc0 != 0 => return Err(WireError::Malformed),
            l => at += 1 + usize::from(l),
        }
    }
}

/// A server's answer to `query` with A records `records` (address, TTL) and `rcode`, the
/// answer names compressed to the question (tests).
#[cfg(test)]
pub fn test_answer(query: &[u8], records: &[([u8; 4], u32)], rcode: u8) -> Vec<u8> {
    let question_end = skip_name(query, HEADER_LEN).unwrap() + 4;
    let mut r = query[..question_end].to_vec();
    r[2] = 0x81; // QR, RD
    r[3] = 0x80 | rcode; // RA
    r[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
    r[10..12].copy_from_slice(&0u16.to_be_bytes());
    for (ip, ttl) in records {
        r.extend_from_slice(&[0xc0, HEADER_LEN as u8]);
        r.extend_from_slice(&TYPE_A.to_be_bytes());
        r.extend_from_slice(&CLASS_IN.to_be_bytes());
        r.extend_from_slice(&ttl.to_be_bytes());
        r.extend_from_slice(&4u16.to_be_bytes());
        r.extend_from_slice(ip);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_encode_labels_and_the_opt_record() {
        let q = query(0xbeef, "svc.test.", TYPE_A).unwrap();
        assert_eq!(&q[..12], &[0xbe, 0xef, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
        assert_eq!(&q[12..22], b"\x03svc\x04test\x00");
        assert_eq!(&q[22..26], &[0, 1, 0, 1]);
        assert_eq!(&q[26..], &[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
        for bad in ["", ".", "a..b", &"x".repeat(64), &"a.".repeat(130)] {
            assert!(query(1, bad, TYPE_A).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn answers_skip_cname_records_and_check_id_and_flags() {
        let q = query(7, "svc.test", TYPE_A).unwrap();
        let mut a = test_answer(&q, &[([127, 0, 0, 2], 60)], 0);
        // Insert a CNAME record before the A record: ancount 2.
        let question_end = skip_name(&a, HEADER_LEN).unwrap() + 4;
        let cname = vec![0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 9, 0, 2, 0xc0, 12];
        a.splice(question_end..question_end, cname);
        a[6..8].copy_from_slice(&2u16.to_be_bytes());
        assert_eq!(
            parse_response(&a, 7, TYPE_A).unwrap(),
            Answer::Records {
                addrs: vec![IpAddr::from([127, 0, 0, 2])],
                ttl: Duration::from_secs(60)
            }
        );
        assert_eq!(parse_response(&a, 8, TYPE_A), Err(WireError::OtherId));
        let mut tc = a.clone();
        tc[2] |= 0x02;
        assert_eq!(parse_response(&tc, 7, TYPE_A), Err(WireError::Truncated));
        let nx = test_answer(&q, &[], 3);
        assert_eq!(parse_response(&nx, 7, TYPE_A), Ok(Answer::NoSuchName));
        let refused = test_answer(&q, &[], 5);
        assert_eq!(
            parse_response(&refused, 7, TYPE_A),
            Err(WireError::Rcode(5))
        );
    }

    #[test]
    fn every_truncation_of_an_answer_is_malformed_not_a_panic() {
        let q = query(9, "svc.test", TYPE_A).unwrap();
        let a = test_answer(&q, &[([10, 1, 2, 3], 5), ([10, 1, 2, 4], 6)], 0);
        for cut in 0..a.len() {
            assert!(
                parse_response(&a[..cut], 9, TYPE_A).is_err(),
                "cut at {cut}"
            );
        }
        // A pointer past the end, and a reserved label type.
        let mut bad = a.clone();
        let first_answer = skip_name(&a, HEADER_LEN).unwrap() + 4;
        bad[first_answer + 1] = 0xff;
        assert_eq!(parse_response(&bad, 9, TYPE_A), Err(WireError::Malformed));
        bad[first_answer] = 0x80;
        assert_eq!(parse_response(&bad, 9, TYPE_A), Err(WireError::Malformed));
    }
}
