//! A DNS server the tests control: a UDP name server on loopback that answers A queries from
//! a table the test edits while the sidecar runs (addresses, TTL, or "no such name"), and
//! counts the queries it got per name, so a test can order its steps by resolutions instead
//! of by time. Written from RFC 1035 on its own, not sharing code with the sidecar's client.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// What a name answers.
#[derive(Debug, Clone, Default)]
struct Entry {
    addrs: Vec<Ipv4Addr>,
    ttl: u32,
}

#[derive(Debug, Default)]
struct Table {
    names: HashMap<String, Entry>,
    queries: HashMap<String, u64>,
}

/// A running name server; stops when dropped.
#[derive(Debug)]
pub struct DnsServer {
    addr: SocketAddr,
    table: Arc<Mutex<Table>>,
    task: JoinHandle<()>,
}

impl DnsServer {
    /// Binds a UDP socket on 127.0.0.1 (any port) and serves. Must run inside a tokio runtime.
    ///
    /// # Errors
    /// The bind error.
    pub async fn start() -> std::io::Result<DnsServer> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = socket.local_addr()?;
        let table = Arc::new(Mutex::new(Table::default()));
        let task = tokio::spawn(serve(socket, table.clone()));
        Ok(DnsServer { addr, table, task })
    }

    /// The server's address (for `dns_resolvers.servers`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `name` answers `addrs` (A records) with `ttl` seconds from now on; an empty list is
    /// an empty answer (the name exists, without addresses).
    pub fn set(&self, name: &str, addrs: &[Ipv4Addr], ttl: u32) {
        self.lock().names.insert(
            normalize(name),
            Entry {
                addrs: addrs.to_vec(),
                ttl,
            },
        );
    }

    /// `name` does not exist from now on (NXDOMAIN).
    pub fn remove(&self, name: &str) {
        self.lock().names.remove(&normalize(name));
    }

    /// Queries received for `name` so far.
    pub fn queries(&self, name: &str) -> u64 {
        self.lock()
            .queries
            .get(&normalize(name))
            .copied()
            .unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

async fn serve(socket: UdpSocket, table: Arc<Mutex<Table>>) {
    let mut buf = vec![0u8; 1500];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        if let Some(reply) = answer(&buf[..n], &table) {
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

/// The reply to one query; `None` for datagrams that are not a single-question query.
fn answer(query: &[u8], table: &Mutex<Table>) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None;
    }
    let qdcount = u16::from_be_bytes([query[4], query[5]]);
    if qdcount != 1 {
        return None;
    }
    // The question: labels up to the root, then type and class (no compression in queries).
    let mut labels = Vec::new();
    let mut at = 12;
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let question_end = at + 4;
    query.get(..question_end)?;
    let name = labels.join(".");
    let entry = {
        let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
        *t.queries.entry(name.clone()).or_default() += 1;
        t.names.get(&name).cloned()
    };
    let mut reply = Vec::with_capacity(question_end + 16 * 4);
    reply.extend_from_slice(&query[..2]); // id
    let rd = query[2] & 0x01;
    reply.push(0x80 | 0x04 | rd); // QR, AA, RD as asked
    let records: Vec<Ipv4Addr> = match (&entry, qtype) {
        (Some(e), 1) => e.addrs.clone(),
        _ => Vec::new(),
    };
    reply.push(if entry.is_some() { 0x80 } else { 0x83 }); // RA; rcode 0 or NXDOMAIN
    reply.extend_from_slice(&1u16.to_be_bytes());
    reply.extend_from_slice(&(records.len() as u16).to_be_bytes());
    reply.extend_from_slice(&[0, 0, 0, 0]); // no authority, no additional
    reply.extend_from_slice(&query[12..question_end]);
    let ttl = entry.map_or(0, |e| e.ttl);
    for ip in records {
        reply.extend_from_slice(&[0xc0, 0x0c]); // the question's name
        reply.extend_from_slice(&[0, 1, 0, 1]); // A, IN
        reply.extend_from_slice(&ttl.to_be_bytes());
        reply.extend_from_slice(&[0, 4]);
        reply.extend_from_slice(&ip.octets());
    }
    Some(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        q
    }

    #[test]
    fn answers_from_the_table_and_counts_queries() {
        let table = Mutex::new(Table::default());
        table.lock().unwrap().names.insert(
            "svc.test".into(),
            Entry {
                addrs: vec![Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)],
                ttl: 9,
            },
        );
        let r = answer(&query("SVC.test"), &table).unwrap();
        assert_eq!(&r[..2], &[0x12, 0x34]);
        assert_eq!(r[3] & 0x0f, 0);
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 2);
        assert_eq!(&r[r.len() - 4..], &[127, 0, 0, 3]);
        let nx = answer(&query("gone.test"), &table).unwrap();
        assert_eq!(nx[3] & 0x0f, 3);
        let t = table.lock().unwrap();
        assert_eq!(t.queries["svc.test"], 1);
        assert_eq!(t.queries["gone.test"], 1);
    }
}
