//! Rendering one [`Record`] as a line of a compiled format, in MOSN's text form or as a
//! JSON object. Runs on the writer thread only.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{LogEncoding, LogFormat, Segment, Variable};
use crate::failure::{Failure, RejectReason};

use super::record::{End, Record};

/// MOSN's text for a value that is not there (`variable.ValueNotFound`).
pub const NOT_FOUND: &str = "-";

/// One access log's compiled format, with its header indices mapped onto the listener's
/// captured headers.
#[derive(Debug)]
pub struct CompiledLog {
    format: LogFormat,
    encoding: LogEncoding,
    request_map: Vec<usize>,
    response_map: Vec<usize>,
}

impl CompiledLog {
    /// `format` for a listener that captures `request_headers` and `response_headers`
    /// (which include every header the format names).
    pub fn new(
        format: LogFormat,
        encoding: LogEncoding,
        request_headers: &[String],
        response_headers: &[String],
    ) -> CompiledLog {
        let map = |names: &[String], captured: &[String]| -> Vec<usize> {
            names
                .iter()
                .map(|n| captured.iter().position(|c| c == n).unwrap_or(usize::MAX))
                .collect()
        };
        CompiledLog {
            request_map: map(&format.request_headers, request_headers),
            response_map: map(&format.response_headers, response_headers),
            format,
            encoding,
        }
    }
}

/// What a record refers to by index: its listener's protocol and the cluster names.
#[derive(Debug, Clone, Copy)]
pub struct Names<'a> {
    /// The listener's protocol.
    pub protocol: &'a str,
    /// Cluster names in plan order.
    pub clusters: &'a [String],
}

/// MOSN's response flag name (`api.ResponseFlag`) for a failure. The two decode/encode
/// failures have no MOSN flag; they get names of their own.
pub fn response_flag(failure: Failure) -> &'static str {
    match failure {
        Failure::NoRoute => "NoRouteFound",
        Failure::NoHealthyHost => "NoHealthyUpstream",
        Failure::ConnectFailed => "UpstreamConnectionFailure",
        Failure::UpstreamClosed => "UpstreamConnectionTermination",
        Failure::Timeout => "UpstreamRequestTimeout",
        Failure::Overflow => "UpstreamOverflow",
        Failure::HeaderDecode => "DownstreamProtocolError",
        Failure::EncodeFailed => "UpstreamProtocolError",
        Failure::FilterFailed => "FilterFailure",
        Failure::Rejected(r) => match r.reason {
            RejectReason::RateLimited | RejectReason::GlobalRateLimited => "RateLimited",
            RejectReason::FaultAbort => "FaultInjected",
            RejectReason::FilterLocalResponse => "FilterLocalResponse",
        },
    }
}

/// MOSN's flag for a request whose client went away (`api.DownStreamTermination`).
pub const DOWNSTREAM_TERMINATION: &str = "DownStreamTermination";

/// A value before encoding.
enum Value<'a> {
    Missing,
    Text(&'a str),
    Bytes(&'a [u8]),
    Number(u64),
    Duration(Duration),
    Time(SystemTime),
    Addr(SocketAddr),
}

fn value<'a>(
    log: &CompiledLog,
    names: &Names<'a>,
    r: &'a Record,
    v: &Variable,
    response_headers: &'a [Option<Box<[u8]>>],
) -> Value<'a> {
    let opt_duration = |d: Option<Duration>| d.map_or(Value::Missing, Value::Duration);
    let opt_addr = |a: Option<SocketAddr>| a.map_or(Value::Missing, Value::Addr);
    let header = |values: &'a [Option<Box<[u8]>>], map: &[usize], i: usize| {
        map.get(i)
            .and_then(|&c| values.get(c))
            .and_then(|v| v.as_deref())
            .map_or(Value::Missing, Value::Bytes)
    };
    match v {
        Variable::StartTime => Value::Time(r.start_wall),
        Variable::RequestReceivedDuration => opt_duration(r.sent_upstream.get()),
        Variable::ResponseReceivedDuration => opt_duration(r.response_received.get()),
        Variable::RequestFinishedDuration | Variable::Duration => Value::Duration(r.finished.get()),
        Variable::BytesSent => Value::Number(r.bytes_sent.get()),
        Variable::BytesReceived => Value::Number(r.bytes_received),
        Variable::Protocol => Value::Text(names.protocol),
        Variable::ResponseCode => r
            .response_code
            .get()
            .map_or(Value::Missing, |c| Value::Number(u64::from(c))),
        Variable::ResponseFlag => match (r.end.get(), r.failure()) {
            (_, Some(f)) => Value::Text(response_flag(f)),
            (End::Reset(None), None) => Value::Text(DOWNSTREAM_TERMINATION),
            _ => Value::Missing,
        },
        Variable::UpstreamLocalAddress => opt_addr(r.upstream_local.get()),
        Variable::DownstreamLocalAddress => opt_addr(r.downstream_local),
        Variable::DownstreamRemoteAddress => Value::Addr(r.downstream_remote),
        Variable::UpstreamHost => opt_addr(r.upstream_host.get()),
        Variable::UpstreamCluster => r
            .cluster
            .get()
            .and_then(|i| names.clusters.get(i))
            .map_or(Value::Missing, |n| Value::Text(n)),
        Variable::UpstreamTransportFailureReason => match (r.end.get(), r.failure()) {
            (_, Some(f)) => Value::Text(failure_reason(f)),
            (End::Reset(None), None) => Value::Text("downstream closed"),
            _ => Value::Missing,
        },
        Variable::RequestHeader(i) => header(&r.request_headers, &log.request_map, *i),
        Variable::ResponseHeader(i) => header(response_headers, &log.response_map, *i),
    }
}

/// A failure's reason in words (its `Display`), as a static string.
fn failure_reason(f: Failure) -> &'static str {
    match f {
        Failure::NoRoute => "no route",
        Failure::NoHealthyHost => "no healthy upstream host",
        Failure::ConnectFailed => "upstream connect failure",
        Failure::UpstreamClosed => "upstream connection closed",
        Failure::Timeout => "timeout",
        Failure::Overflow => "circuit breaker overflow",
        Failure::HeaderDecode => "request header decode error",
        Failure::EncodeFailed => "request encode failure",
        Failure::FilterFailed => "stream filter failure",
        Failure::Rejected(r) => match r.reason {
            RejectReason::RateLimited => "rate limited",
            RejectReason::FaultAbort => "injected fault abort",
            RejectReason::GlobalRateLimited => "over a global rate limit",
            RejectReason::FilterLocalResponse => "answered by a stream filter",
        },
    }
}

/// What [`render`] reuses between lines (so a line costs no allocation once warm): a text
/// buffer and the formatted `start_time` of the last second seen.
#[derive(Debug, Default)]
pub struct Scratch {
    text: Vec<u8>,
    /// Whole seconds since the epoch and their `2006/01/02 15:04:05.` prefix.
    second: Option<(u64, [u8; 20])>,
}

/// Appends `r` as one line (with its `\n`) of `log` to `out`.
pub fn render(
    log: &CompiledLog,
    names: &Names<'_>,
    r: &Record,
    out: &mut Vec<u8>,
    scratch: &mut Scratch,
) {
    let response_headers = r.response_headers.borrow();
    match log.encoding {
        LogEncoding::Text => {
            for s in &log.format.segments {
                match s {
                    Segment::Text(t) => out.extend_from_slice(t.as_bytes()),
                    Segment::Var { variable, .. } => {
                        match value(log, names, r, variable, &response_headers) {
                            Value::Missing => out.extend_from_slice(NOT_FOUND.as_bytes()),
                            Value::Text(t) => push_escaped(t.as_bytes(), out),
                            Value::Bytes(b) => push_escaped(b, out),
                            plain => plain_value(&plain, out, scratch),
                        }
                    }
                }
            }
        }
        LogEncoding::Json => {
            out.push(b'{');
            for (i, s) in log.format.segments.iter().enumerate() {
                let Segment::Var { name, variable } = s else {
                    continue;
                };
                if i > 0 {
                    out.push(b',');
                }
                json_string(name, out);
                out.push(b':');
                match value(log, names, r, variable, &response_headers) {
                    Value::Missing => out.extend_from_slice(b"null"),
                    Value::Number(n) => push_u64(out, n),
                    Value::Text(t) => json_string(t, out),
                    Value::Bytes(b) => json_string(&String::from_utf8_lossy(b), out),
                    // Durations, times and addresses are plain ASCII (and `µ`): no escapes.
                    plain => {
                        out.push(b'"');
                        plain_value(&plain, out, scratch);
                        out.push(b'"');
                    }
                }
            }
            out.push(b'}');
        }
    }
    out.push(b'\n');
}

/// A value that needs no escaping: a number, duration, time or address.
fn plain_value(v: &Value<'_>, out: &mut Vec<u8>, scratch: &mut Scratch) {
    match v {
        Value::Number(n) => push_u64(out, *n),
        Value::Duration(d) => go_duration(*d, out),
        Value::Time(t) => {
            let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
            let secs = since.as_secs();
            let prefix = match scratch.second {
                Some((s, prefix)) if s == secs => prefix,
                _ => {
                    let prefix = second_prefix(secs);
                    scratch.second = Some((secs, prefix));
                    prefix
                }
            };
            out.extend_from_slice(&prefix);
            push_padded(out, u64::from(since.subsec_millis()), 3);
        }
        Value::Addr(SocketAddr::V4(a)) => {
            for (i, octet) in a.ip().octets().iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_u64(out, u64::from(*octet));
            }
            out.push(b':');
            push_u64(out, u64::from(a.port()));
        }
        Value::Addr(a) => {
            scratch.text.clear();
            let _ = std::io::Write::write_fmt(&mut scratch.text, format_args!("{a}"));
            out.extend_from_slice(&scratch.text);
        }
        Value::Missing => out.extend_from_slice(NOT_FOUND.as_bytes()),
        Value::Text(t) => out.extend_from_slice(t.as_bytes()),
        Value::Bytes(b) => out.extend_from_slice(b),
    }
}

/// `n` in decimal, without `core::fmt`.
fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[at..]);
}

/// `n` in decimal, zero-padded to `width` digits.
fn push_padded(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut rest = n;
    for slot in buf[..width].iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.extend_from_slice(&buf[..width]);
}

/// Text lines stay one line: control characters and `\` are escaped (`\n`, `\t`, `\xNN`).
fn push_escaped(s: &[u8], out: &mut Vec<u8>) {
    if !s.iter().any(|&b| b < 0x20 || b == 0x7f || b == b'\\') {
        out.extend_from_slice(s);
        return;
    }
    for &b in s {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b if b < 0x20 || b == 0x7f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'x',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                ]);
            }
            b => out.push(b),
        }
    }
}

/// `s` as a JSON string (serde_json's escaping).
fn json_string(s: &str, out: &mut Vec<u8>) {
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Go's `time.Duration.String()`: `0s`, `850ns`, `12.5µs`, `1.234567ms`, `2.5s`, `1m30s`,
/// `1h0m0.001s`.
pub fn go_duration(d: Duration, out: &mut Vec<u8>) {
    let ns = d.as_nanos();
    let fraction = |out: &mut Vec<u8>, value: u128, unit: u128, digits: usize| {
        push_u64(out, u64::try_from(value / unit).unwrap_or(u64::MAX));
        let mut rest = value % unit;
        if rest != 0 {
            // `rest` as `digits` decimal digits, trailing zeros dropped.
            let mut buf = [b'0'; 9];
            for slot in buf[..digits].iter_mut().rev() {
                *slot = b'0' + (rest % 10) as u8;
                rest /= 10;
            }
            let end = buf[..digits]
                .iter()
                .rposition(|&d| d != b'0')
                .map_or(0, |i| i + 1);
            out.push(b'.');
            out.extend_from_slice(&buf[..end]);
        }
    };
    if ns == 0 {
        out.extend_from_slice(b"0s");
    } else if ns < 1_000 {
        push_u64(out, ns as u64);
        out.extend_from_slice(b"ns");
    } else if ns < 1_000_000 {
        fraction(out, ns, 1_000, 3);
        out.extend_from_slice("µs".as_bytes());
    } else if ns < 1_000_000_000 {
        fraction(out, ns, 1_000_000, 6);
        out.extend_from_slice(b"ms");
    } else {
        let secs = u64::try_from(ns / 1_000_000_000).unwrap_or(u64::MAX);
        let (h, m) = (secs / 3600, secs % 3600 / 60);
        if h > 0 {
            push_u64(out, h);
            out.push(b'h');
        }
        if h > 0 || m > 0 {
            push_u64(out, m);
            out.push(b'm');
        }
        fraction(out, ns % 60_000_000_000, 1_000_000_000, 9);
        out.push(b's');
    }
}

/// MOSN's start time layout `2006/01/02 15:04:05.000`, in UTC.
pub fn start_time(t: SystemTime, out: &mut Vec<u8>) {
    plain_value(&Value::Time(t), out, &mut Scratch::default());
}

/// `2006/01/02 15:04:05.` for `secs` since the epoch (UTC).
fn second_prefix(secs: u64) -> [u8; 20] {
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    let mut v = Vec::with_capacity(20);
    push_padded(&mut v, y.clamp(0, 9999) as u64, 4);
    v.push(b'/');
    push_padded(&mut v, u64::from(mo), 2);
    v.push(b'/');
    push_padded(&mut v, u64::from(d), 2);
    v.push(b' ');
    push_padded(&mut v, s / 3600, 2);
    v.push(b':');
    push_padded(&mut v, s % 3600 / 60, 2);
    v.push(b':');
    push_padded(&mut v, s % 60, 2);
    v.push(b'.');
    let mut prefix = [0u8; 20];
    prefix.copy_from_slice(&v);
    prefix
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::Rejection;

    fn dur(d: Duration) -> String {
        let mut s = Vec::new();
        go_duration(d, &mut s);
        String::from_utf8(s).unwrap()
    }

    fn time(t: SystemTime) -> String {
        let mut s = Vec::new();
        start_time(t, &mut s);
        String::from_utf8(s).unwrap()
    }

    #[test]
    fn durations_print_like_go() {
        assert_eq!(dur(Duration::ZERO), "0s");
        assert_eq!(dur(Duration::from_nanos(850)), "850ns");
        assert_eq!(dur(Duration::from_nanos(12_500)), "12.5µs");
        assert_eq!(dur(Duration::from_nanos(1_000)), "1µs");
        assert_eq!(dur(Duration::from_nanos(1_234_567)), "1.234567ms");
        assert_eq!(dur(Duration::from_millis(5)), "5ms");
        assert_eq!(dur(Duration::from_millis(2_500)), "2.5s");
        assert_eq!(dur(Duration::from_secs(90)), "1m30s");
        assert_eq!(dur(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(dur(Duration::from_millis(3_600_001)), "1h0m0.001s");
        assert_eq!(dur(Duration::from_nanos(1_000_000_001)), "1.000000001s");
    }

    #[test]
    fn start_time_is_mosns_layout_in_utc() {
        // 2024-02-29T23:59:58.123Z
        let t = UNIX_EPOCH + Duration::from_millis(1_709_251_198_123);
        assert_eq!(time(t), "2024/02/29 23:59:58.123");
        assert_eq!(time(UNIX_EPOCH), "1970/01/01 00:00:00.000");
        // The cached second is reused only within its second.
        let mut scratch = Scratch::default();
        let mut out = Vec::new();
        for ms in [0, 876, 877, 61_007 - 123] {
            let v = Value::Time(t + Duration::from_millis(ms));
            plain_value(&v, &mut out, &mut scratch);
            out.push(b' ');
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2024/02/29 23:59:58.123 2024/02/29 23:59:58.999 2024/02/29 23:59:59.000 \
             2024/03/01 00:00:59.007 "
        );
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn flags_use_mosns_names() {
        assert_eq!(response_flag(Failure::NoRoute), "NoRouteFound");
        assert_eq!(response_flag(Failure::NoHealthyHost), "NoHealthyUpstream");
        assert_eq!(
            response_flag(Failure::ConnectFailed),
            "UpstreamConnectionFailure"
        );
        assert_eq!(response_flag(Failure::Timeout), "UpstreamRequestTimeout");
        assert_eq!(response_flag(Failure::Overflow), "UpstreamOverflow");
        let limited = Failure::Rejected(Rejection {
            status: 503,
            reason: RejectReason::RateLimited,
        });
        assert_eq!(response_flag(limited), "RateLimited");
        for f in [Failure::NoRoute, Failure::Timeout, limited] {
            assert_eq!(failure_reason(f), f.to_string());
        }
    }

    #[test]
    fn numbers_and_addresses_print_without_fmt() {
        let mut out = Vec::new();
        let mut scratch = Scratch::default();
        for v in [
            Value::Number(0),
            Value::Number(u64::MAX),
            Value::Addr("10.0.0.255:65535".parse().unwrap()),
            Value::Addr("[::1]:2045".parse().unwrap()),
        ] {
            plain_value(&v, &mut out, &mut scratch);
            out.push(b' ');
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "0 18446744073709551615 10.0.0.255:65535 [::1]:2045 "
        );
    }

    #[test]
    fn text_values_stay_on_one_line() {
        let mut out = Vec::new();
        push_escaped("a b\nc\td\\e\u{1}f\u{e9}".as_bytes(), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a b\\nc\\td\\\\e\\x01f\u{e9}"
        );
    }
}
