'use strict';
// Reads the Bolt v1 header map of every RPC request a server connection receives, as the
// bytes arrived. sofa-bolt-node skips the header section of Hessian requests (the library
// never shows it to the service), so the tests that prove what a proxy put there look at the
// wire: a second 'data' listener on the socket sees the same bytes as the library's decoder.

const REQUEST_HEAD = 22; // proto type cmd(2) ver2 id(4) codec timeout(4) classLen(2) headerLen(2) contentLen(4)
const RPC_REQUEST = 1; // cmdCode; 0 would be a heartbeat

/** Decodes SOFA's simple map: (int32 BE length, bytes) for each key and value. */
function decodeHeaders(buf) {
  const headers = {};
  let at = 0;
  const next = () => {
    const len = buf.readInt32BE(at);
    at += 4;
    if (len < 0) return null;
    const s = buf.toString('utf8', at, at + len);
    at += len;
    return s;
  };
  while (at + 4 <= buf.length) {
    const k = next();
    const v = at + 4 <= buf.length ? next() : null;
    if (k !== null && v !== null) headers[k] = v;
  }
  return headers;
}

class HeaderTap {
  /**
   * @param {net.Socket} socket - the server connection's socket
   * @param {function(object, number)} onRequest - called with each request's headers and id
   */
  constructor(socket, onRequest) {
    this.buf = null;
    this.onRequest = onRequest;
    this.unparsable = false;
    socket.on('data', chunk => this._feed(chunk));
  }

  _feed(chunk) {
    if (this.unparsable) return;
    this.buf = this.buf ? Buffer.concat([ this.buf, chunk ]) : chunk;
    while (this.buf) {
      const b = this.buf;
      if (b[0] !== 0x01) { // not Bolt v1: stop watching rather than guess
        this.unparsable = true;
        this.buf = null;
        return;
      }
      if (b.length < REQUEST_HEAD) return;
      const classLen = b.readUInt16BE(14);
      const headerLen = b.readUInt16BE(16);
      const len = REQUEST_HEAD + classLen + headerLen + b.readUInt32BE(18);
      if (b.length < len) return;
      if (b[1] !== 0x00 && b.readUInt16BE(2) === RPC_REQUEST) {
        const at = REQUEST_HEAD + classLen;
        this.onRequest(decodeHeaders(b.subarray(at, at + headerLen)), b.readUInt32BE(5));
      }
      this.buf = b.length === len ? null : b.subarray(len);
    }
  }
}

module.exports = { HeaderTap, decodeHeaders };
