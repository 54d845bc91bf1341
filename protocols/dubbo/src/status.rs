//! Dubbo response statuses (`org.apache.dubbo.remoting.exchange.Response`), the mapping of
//! the proxy's HTTP-like codes onto them (hijack) and back (retries on response statuses),
//! and the error message a hijacked response carries.

/// OK.
pub const OK: u8 = 20;
/// CLIENT_TIMEOUT.
pub const CLIENT_TIMEOUT: u8 = 30;
/// SERVER_TIMEOUT.
pub const SERVER_TIMEOUT: u8 = 31;
/// BAD_REQUEST.
pub const BAD_REQUEST: u8 = 40;
/// BAD_RESPONSE.
pub const BAD_RESPONSE: u8 = 50;
/// SERVICE_NOT_FOUND.
pub const SERVICE_NOT_FOUND: u8 = 60;
/// SERVICE_ERROR.
pub const SERVICE_ERROR: u8 = 70;
/// SERVER_ERROR.
pub const SERVER_ERROR: u8 = 80;
/// CLIENT_ERROR.
pub const CLIENT_ERROR: u8 = 90;
/// SERVER_THREADPOOL_EXHAUSTED_ERROR.
pub const SERVER_THREADPOOL_EXHAUSTED: u8 = 100;

/// Maps a proxy code to a Dubbo status: 200→20, 504 (timeout)→31, 502 (no healthy upstream,
/// connect failure) and 503 (overflow, busy)→100, 404 (no route)→60, 400 and the codec
/// codes 0 and 3→40, anything else→80.
pub fn map_status(proxy_code: u32) -> u32 {
    let status = match proxy_code {
        200 => OK,
        504 => SERVER_TIMEOUT,
        502 | 503 => SERVER_THREADPOOL_EXHAUSTED,
        404 => SERVICE_NOT_FOUND,
        400 | 0 | 3 => BAD_REQUEST,
        _ => SERVER_ERROR,
    };
    u32::from(status)
}

/// Maps a Dubbo response status to the proxy's HTTP-like code: 20→200, 30/31→504,
/// 100→503, 60→404, 40→400, anything else→500.
pub fn response_code(status: u32) -> u32 {
    match u8::try_from(status) {
        Ok(OK) => 200,
        Ok(CLIENT_TIMEOUT | SERVER_TIMEOUT) => 504,
        Ok(SERVER_THREADPOOL_EXHAUSTED) => 503,
        Ok(SERVICE_NOT_FOUND) => 404,
        Ok(BAD_REQUEST) => 400,
        _ => 500,
    }
}

/// The error message of a hijacked response with `status` (what the Dubbo consumer puts in
/// its `RpcException`).
pub fn message(status: u8) -> &'static str {
    match status {
        CLIENT_TIMEOUT | SERVER_TIMEOUT => "rpc sidecar: upstream timed out",
        SERVER_THREADPOOL_EXHAUSTED => "rpc sidecar: no healthy upstream or upstream busy",
        SERVICE_NOT_FOUND => "rpc sidecar: no route for this service",
        BAD_REQUEST => "rpc sidecar: bad request",
        OK => "",
        _ => "rpc sidecar: proxy error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_codes_map_to_statuses_and_back() {
        let table = [
            (200, 20),
            (504, 31),
            (502, 100),
            (503, 100),
            (404, 60),
            (400, 40),
            (0, 40),
            (3, 40),
            (500, 80),
            (509, 80),
            (u32::MAX, 80),
        ];
        for (code, status) in table {
            assert_eq!(map_status(code), status, "code {code}");
        }
        for code in [200, 504, 503, 404, 400] {
            assert_eq!(response_code(map_status(code)), code);
        }
        for (status, code) in [
            (30, 504),
            (50, 500),
            (70, 500),
            (80, 500),
            (90, 500),
            (300, 500),
        ] {
            assert_eq!(response_code(status), code, "status {status}");
        }
        assert!(message(SERVER_TIMEOUT).contains("timed out"));
        assert!(message(SERVICE_NOT_FOUND).contains("no route"));
    }
}
