//! The `log_format` compiler: MOSN's `%variable%` syntax (MOSN `pkg/log/accesslog.go`
//! `parseFormat`) with MOSN's variable names (`pkg/types/variable.go`, `pkg/proxy/var.go`),
//! compiled once at config time so an unknown variable is a config error naming it.

/// MOSN's default access log format (`types.DefaultAccessLogFormat`), used when
/// `log_format` is empty or absent. `%response_code%` appears twice, as in MOSN.
pub const DEFAULT_ACCESS_LOG_FORMAT: &str = "%start_time% %request_received_duration% \
%response_received_duration% %bytes_sent% %bytes_received% %protocol% %response_code% \
%duration% %response_flag% %response_code% %upstream_local_address% \
%downstream_local_address% %downstream_remote_address% %upstream_host%";

/// MOSN's prefix of request header variables (`types.VarPrefixReqHeader`).
pub const REQUEST_HEADER_PREFIX: &str = "request_header_";
/// MOSN's prefix of response header variables (`types.VarPrefixRespHeader`).
pub const RESPONSE_HEADER_PREFIX: &str = "response_header_";

/// How each line is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogEncoding {
    /// MOSN's: the format's text with each `%variable%` replaced by its value (`-` when
    /// absent).
    Text,
    /// One JSON object per line: each variable of the format is a key (its name), literal
    /// text is not allowed; absent values are `null`, counts and codes are numbers.
    Json,
}

impl std::fmt::Display for LogEncoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LogEncoding::Text => "text",
            LogEncoding::Json => "json",
        })
    }
}

/// A value an access log line can show (MOSN's variable names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Variable {
    /// `start_time`: when the request was read, `2006/01/02 15:04:05.000` (UTC).
    StartTime,
    /// `request_received_duration`: start → the request was queued toward the upstream.
    RequestReceivedDuration,
    /// `response_received_duration`: start → the upstream's response arrived.
    ResponseReceivedDuration,
    /// `request_finished_duration`: start → the request ended.
    RequestFinishedDuration,
    /// `duration`: start → the request ended (MOSN's `Duration()`).
    Duration,
    /// `bytes_sent`: bytes of the answer queued toward the client.
    BytesSent,
    /// `bytes_received`: bytes of the request read from the client.
    BytesReceived,
    /// `protocol`: the listener's protocol.
    Protocol,
    /// `response_code`: the upstream response's protocol status, or the proxy code of the
    /// sidecar's own answer.
    ResponseCode,
    /// `response_flag` / `response_flags`: MOSN's response flag name of a failure.
    ResponseFlag,
    /// `upstream_local_address`: the local address of the upstream connection used.
    UpstreamLocalAddress,
    /// `downstream_local_address`: the listener-side address of the client's connection.
    DownstreamLocalAddress,
    /// `downstream_remote_address`: the client's address.
    DownstreamRemoteAddress,
    /// `upstream_host`: the upstream host chosen (its address).
    UpstreamHost,
    /// `upstream_cluster`: the cluster routed to.
    UpstreamCluster,
    /// `upstream_transport_failure_reason`: why the sidecar answered itself, in words.
    UpstreamTransportFailureReason,
    /// `request_header_<name>`: the request header `<name>`; the index into
    /// [`LogFormat::request_headers`].
    RequestHeader(usize),
    /// `response_header_<name>`: the upstream response header `<name>`; the index into
    /// [`LogFormat::response_headers`].
    ResponseHeader(usize),
}

/// Every plain variable name with its variable (header variables are prefixes).
pub const VARIABLES: &[(&str, Variable)] = &[
    ("start_time", Variable::StartTime),
    (
        "request_received_duration",
        Variable::RequestReceivedDuration,
    ),
    (
        "response_received_duration",
        Variable::ResponseReceivedDuration,
    ),
    (
        "request_finished_duration",
        Variable::RequestFinishedDuration,
    ),
    ("duration", Variable::Duration),
    ("bytes_sent", Variable::BytesSent),
    ("bytes_received", Variable::BytesReceived),
    ("protocol", Variable::Protocol),
    ("response_code", Variable::ResponseCode),
    ("response_flag", Variable::ResponseFlag),
    ("response_flags", Variable::ResponseFlag),
    ("upstream_local_address", Variable::UpstreamLocalAddress),
    ("downstream_local_address", Variable::DownstreamLocalAddress),
    (
        "downstream_remote_address",
        Variable::DownstreamRemoteAddress,
    ),
    ("upstream_host", Variable::UpstreamHost),
    ("upstream_cluster", Variable::UpstreamCluster),
    (
        "upstream_transport_failure_reason",
        Variable::UpstreamTransportFailureReason,
    ),
];

/// One piece of a format: literal text or a variable (with the name it was written as).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Text copied as is (`\%` already unescaped to `%`).
    Text(String),
    /// A variable and its name as written (the JSON key).
    Var {
        /// The name between the `%`s.
        name: String,
        /// What it shows.
        variable: Variable,
    },
}

/// A compiled `log_format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFormat {
    /// Text and variables in order.
    pub segments: Vec<Segment>,
    /// Request header names the format shows (what the request path copies, nothing else).
    pub request_headers: Vec<String>,
    /// Response header names the format shows.
    pub response_headers: Vec<String>,
}

/// Why a `log_format` does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// `%name%` with a name no variable has.
    #[error("unknown access log variable %{0}% (known: {known}, and request_header_<name>, response_header_<name>)", known = known_names())]
    UnknownVariable(String),
    /// `%%`.
    #[error("empty variable %% (write \\% for a literal percent sign)")]
    EmptyVariable,
    /// An odd number of unescaped `%`.
    #[error("unclosed variable: a % without its closing %")]
    Unclosed,
    /// `request_header_` / `response_header_` without a header name.
    #[error("variable %{0}% names no header")]
    NoHeaderName(String),
    /// Literal text in a JSON lines format.
    #[error("literal text {0:?} in a JSON lines format: list variables separated by spaces")]
    TextInJson(String),
}

fn known_names() -> String {
    VARIABLES
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

impl LogFormat {
    /// Compiles a MOSN format string: `%name%` is a variable, `\%` a literal `%`, the rest
    /// literal text; an empty string is MOSN's default format.
    ///
    /// # Errors
    /// [`FormatError`] for an unknown variable, `%%` or an unclosed `%`.
    pub fn parse(format: &str) -> Result<LogFormat, FormatError> {
        let format = if format.is_empty() {
            DEFAULT_ACCESS_LOG_FORMAT
        } else {
            format
        };
        let mut f = LogFormat {
            segments: Vec::new(),
            request_headers: Vec::new(),
            response_headers: Vec::new(),
        };
        let mut text = String::new();
        let mut var: Option<String> = None;
        let mut chars = format.chars().peekable();
        while let Some(c) = chars.next() {
            match (c, &mut var) {
                ('\\', _) if chars.peek() == Some(&'%') => {
                    chars.next();
                    match &mut var {
                        Some(name) => name.push('%'),
                        None => text.push('%'),
                    }
                }
                ('%', None) => {
                    if !text.is_empty() {
                        f.segments.push(Segment::Text(std::mem::take(&mut text)));
                    }
                    var = Some(String::new());
                }
                ('%', Some(name)) => {
                    let name = std::mem::take(name);
                    var = None;
                    let variable = f.variable(&name)?;
                    f.segments.push(Segment::Var { name, variable });
                }
                (c, Some(name)) => name.push(c),
                (c, None) => text.push(c),
            }
        }
        if var.is_some() {
            return Err(FormatError::Unclosed);
        }
        if !text.is_empty() {
            f.segments.push(Segment::Text(text));
        }
        Ok(f)
    }

    fn variable(&mut self, name: &str) -> Result<Variable, FormatError> {
        if name.is_empty() {
            return Err(FormatError::EmptyVariable);
        }
        if let Some((_, v)) = VARIABLES.iter().find(|(n, _)| *n == name) {
            return Ok(v.clone());
        }
        let header = |prefix: &str, list: &mut Vec<String>| -> Result<Option<usize>, FormatError> {
            let Some(header) = name.strip_prefix(prefix) else {
                return Ok(None);
            };
            if header.is_empty() {
                return Err(FormatError::NoHeaderName(name.to_owned()));
            }
            Ok(Some(match list.iter().position(|h| h == header) {
                Some(i) => i,
                None => {
                    list.push(header.to_owned());
                    list.len() - 1
                }
            }))
        };
        if let Some(i) = header(REQUEST_HEADER_PREFIX, &mut self.request_headers)? {
            return Ok(Variable::RequestHeader(i));
        }
        if let Some(i) = header(RESPONSE_HEADER_PREFIX, &mut self.response_headers)? {
            return Ok(Variable::ResponseHeader(i));
        }
        Err(FormatError::UnknownVariable(name.to_owned()))
    }

    /// For JSON lines: the variables only (whitespace between them dropped), each name once.
    ///
    /// # Errors
    /// [`FormatError::TextInJson`] for literal text other than whitespace.
    pub fn into_json_fields(mut self) -> Result<LogFormat, FormatError> {
        let mut seen: Vec<String> = Vec::new();
        let mut fields = Vec::new();
        for s in self.segments {
            match s {
                Segment::Text(t) if t.trim().is_empty() => {}
                Segment::Text(t) => return Err(FormatError::TextInJson(t)),
                Segment::Var { name, variable } => {
                    if !seen.contains(&name) {
                        seen.push(name.clone());
                        fields.push(Segment::Var { name, variable });
                    }
                }
            }
        }
        self.segments = fields;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(f: &LogFormat) -> Vec<&str> {
        f.segments
            .iter()
            .filter_map(|s| match s {
                Segment::Var { name, .. } => Some(name.as_str()),
                Segment::Text(_) => None,
            })
            .collect()
    }

    #[test]
    fn the_empty_format_is_mosns_default() {
        let f = LogFormat::parse("").unwrap();
        assert_eq!(f, LogFormat::parse(DEFAULT_ACCESS_LOG_FORMAT).unwrap());
        assert_eq!(
            vars(&f),
            [
                "start_time",
                "request_received_duration",
                "response_received_duration",
                "bytes_sent",
                "bytes_received",
                "protocol",
                "response_code",
                "duration",
                "response_flag",
                "response_code",
                "upstream_local_address",
                "downstream_local_address",
                "downstream_remote_address",
                "upstream_host"
            ]
        );
        assert_eq!(f.segments[1], Segment::Text(" ".into()));
    }

    #[test]
    fn every_variable_name_compiles_to_its_variable() {
        for (name, v) in VARIABLES {
            let f = LogFormat::parse(&format!("%{name}%")).unwrap();
            assert_eq!(
                f.segments,
                [Segment::Var {
                    name: (*name).to_owned(),
                    variable: v.clone()
                }]
            );
        }
    }

    #[test]
    fn text_escapes_and_headers() {
        let f = LogFormat::parse(
            "[%start_time%] 100\\% %request_header_service% %request_header_sofa_trace_id% \
             %request_header_service% %response_header_rpc_trace_context%",
        )
        .unwrap();
        assert_eq!(f.segments[0], Segment::Text("[".into()));
        assert_eq!(f.segments[2], Segment::Text("] 100% ".into()));
        assert_eq!(f.request_headers, ["service", "sofa_trace_id"]);
        assert_eq!(f.response_headers, ["rpc_trace_context"]);
        let header_vars: Vec<&Variable> = f
            .segments
            .iter()
            .filter_map(|s| match s {
                Segment::Var { variable, .. } => Some(variable),
                _ => None,
            })
            .collect();
        assert_eq!(
            header_vars[1..],
            [
                &Variable::RequestHeader(0),
                &Variable::RequestHeader(1),
                &Variable::RequestHeader(0),
                &Variable::ResponseHeader(0)
            ]
        );
        assert_eq!(
            LogFormat::parse("a %protocol% b").unwrap().segments.last(),
            Some(&Segment::Text(" b".into()))
        );
    }

    #[test]
    fn bad_formats_are_refused_by_name() {
        assert_eq!(
            LogFormat::parse("%start_time% %upstream_hots%"),
            Err(FormatError::UnknownVariable("upstream_hots".into()))
        );
        let msg = FormatError::UnknownVariable("x".into()).to_string();
        assert!(
            msg.contains("%x%") && msg.contains("upstream_host"),
            "{msg}"
        );
        assert_eq!(LogFormat::parse("a %% b"), Err(FormatError::EmptyVariable));
        assert_eq!(LogFormat::parse("%protocol"), Err(FormatError::Unclosed));
        assert_eq!(
            LogFormat::parse("%request_header_%"),
            Err(FormatError::NoHeaderName("request_header_".into()))
        );
        // MOSN's old CamelCase names are gone from MOSN too.
        assert!(LogFormat::parse("%StartTime%").is_err());
    }

    #[test]
    fn json_fields_are_the_variables_once_each() {
        let f = LogFormat::parse("").unwrap().into_json_fields().unwrap();
        let names = vars(&f);
        assert_eq!(names.len(), 13, "response_code appears once: {names:?}");
        assert!(f.segments.iter().all(|s| matches!(s, Segment::Var { .. })));
        assert_eq!(
            LogFormat::parse("code=%response_code%")
                .unwrap()
                .into_json_fields(),
            Err(FormatError::TextInJson("code=".into()))
        );
    }
}
