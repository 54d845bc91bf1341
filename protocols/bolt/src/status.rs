//! Bolt response statuses (sofa-bolt `ResponseStatus`, xprotocol spec
//! (`docs/xprotocol-proxy-and-bolt.md`) §1.5) and the mapping of the proxy's HTTP-like codes onto
//! them (xprotocol spec (`docs/xprotocol-proxy-and-bolt.md`) §2.6, as the Go SDK's bolt plugin),
//! and back (MOSN's `BoltStatusMapping`, used for retries on response statuses).

/// SUCCESS.
pub const SUCCESS: u32 = 0x00;
/// SERVER_THREADPOOL_BUSY.
pub const SERVER_THREADPOOL_BUSY: u32 = 0x04;
/// UNKNOWN.
pub const UNKNOWN: u32 = 0x03;
/// NO_PROCESSOR.
pub const NO_PROCESSOR: u32 = 0x06;
/// TIMEOUT.
pub const TIMEOUT: u32 = 0x07;
/// CODEC_EXCEPTION.
pub const CODEC_EXCEPTION: u32 = 0x09;
/// CONNECTION_CLOSED.
pub const CONNECTION_CLOSED: u32 = 0x10;
/// SERVER_DESERIAL_EXCEPTION.
pub const SERVER_DESERIAL_EXCEPTION: u32 = 0x12;

/// Maps a proxy code to a Bolt status: 200→0, 404→6, 502→16, 503→4, 504→7, 0→9, 3→18,
/// anything else → 3 (UNKNOWN). 502 is CONNECTION_CLOSED as in the Go SDK's plugin (MOSN's
/// native codec says NO_PROCESSOR).
pub fn map_status(proxy_code: u32) -> u32 {
    match proxy_code {
        200 => SUCCESS,
        404 => NO_PROCESSOR,
        502 => CONNECTION_CLOSED,
        503 => SERVER_THREADPOOL_BUSY,
        504 => TIMEOUT,
        0 => CODEC_EXCEPTION,
        3 => SERVER_DESERIAL_EXCEPTION,
        _ => UNKNOWN,
    }
}

/// Maps a Bolt response status to the proxy's HTTP-like code, as MOSN's
/// `BoltStatusMapping.MappingHeaderStatusCode`: 0→200, 4 (SERVER_THREADPOOL_BUSY)→503,
/// 7 (TIMEOUT)→504, 16 (CONNECTION_CLOSED)→502, anything else → 500.
pub fn response_code(status: u32) -> u32 {
    match status {
        SUCCESS => 200,
        SERVER_THREADPOOL_BUSY => 503,
        TIMEOUT => 504,
        CONNECTION_CLOSED => 502,
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_statuses_map_back_like_mosn() {
        let table = [
            (0, 200),
            (4, 503),
            (7, 504),
            (16, 502),
            (2, 500),
            (3, 500),
            (6, 500),
        ];
        for (status, code) in table {
            assert_eq!(response_code(status), code, "status {status}");
        }
        // The hijack statuses of 503 and 504 map back to their codes.
        for code in [503, 504, 502] {
            assert_eq!(response_code(map_status(code)), code);
        }
    }

    #[test]
    fn maps_like_the_go_sdk() {
        let table = [
            (200, 0),
            (404, 6),
            (502, 16),
            (503, 4),
            (504, 7),
            (0, 9),
            (3, 18),
            (2, 3),
            (403, 3),
            (500, 3),
            (509, 3),
            (u32::MAX, 3),
        ];
        for (code, status) in table {
            assert_eq!(map_status(code), status, "code {code}");
        }
    }
}
