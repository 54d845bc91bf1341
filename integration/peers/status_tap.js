'use strict';
// Reads the Bolt v1 response status of every RPC response a client connection receives.
// sofa-bolt-node decodes the status away (a response without content becomes one generic error),
// so the tests look at the wire: a second 'data' listener on the socket sees the same bytes as the
// library's decoder, without changing how the library reads them.

const RESPONSE = 0x00;
const RPC_RESPONSE = 2; // cmdCode; 0 would be a heartbeat ack
const RESPONSE_HEAD = 20; // proto type cmd(2) ver2 id(4) codec status(2) classLen(2) headerLen(2) contentLen(4)
const REQUEST_HEAD = 22; // ... codec timeout(4) classLen(2) headerLen(2) contentLen(4)

class StatusTap {
  /**
   * @param {net.Socket} socket - the client connection's socket
   * @param {boolean} byId - also remember the status of each response id (for a few calls only)
   */
  constructor(socket, byId = false) {
    this.buf = null;
    this.counts = {}; // status -> responses
    this.byId = byId ? new Map() : null; // id -> status
    this.unparsable = false;
    socket.on('data', chunk => this._feed(chunk));
  }

  /** Responses with a status other than SUCCESS (0). */
  get errorResponses() {
    return Object.entries(this.counts)
      .filter(([ status ]) => status !== '0')
      .reduce((sum, [ , n ]) => sum + n, 0);
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
      const isResponse = b[1] === RESPONSE;
      const head = isResponse ? RESPONSE_HEAD : REQUEST_HEAD;
      if (b.length < head) return;
      const len = isResponse ?
        head + b.readUInt16BE(12) + b.readUInt16BE(14) + b.readUInt32BE(16) :
        head + b.readUInt16BE(14) + b.readUInt16BE(16) + b.readUInt32BE(18);
      if (b.length < len) return;
      if (isResponse && b.readUInt16BE(2) === RPC_RESPONSE) {
        const id = b.readUInt32BE(5);
        const status = b.readUInt16BE(10);
        this.counts[status] = (this.counts[status] || 0) + 1;
        if (this.byId) this.byId.set(id, status);
      }
      this.buf = b.length === len ? null : b.subarray(len);
    }
  }
}

module.exports = { StatusTap };
