'use strict';
// Command-line parsing and the logger shared by server.js and client.js.

/**
 * Parses `--name value` pairs into an object (starting from `defaults`); other words go to `_`.
 * An unknown option is an error, so a typo in a test never silently changes a scenario.
 */
function parseArgs(argv, defaults) {
  const out = Object.assign({ _: [] }, defaults);
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i];
    if (!word.startsWith('--')) {
      out._.push(word);
      continue;
    }
    const name = word.slice(2);
    if (!(name in defaults)) {
      console.error(`unknown option ${word}; known: ${Object.keys(defaults).map(k => '--' + k).join(' ')}`);
      process.exit(2);
    }
    if (i + 1 >= argv.length) {
      console.error(`option ${word} needs a value`);
      process.exit(2);
    }
    out[name] = argv[++i];
  }
  return out;
}

/** The logger sofa-rpc-node requires: silent, unless PEER_DEBUG=1 sends it to stderr. */
function makeLogger() {
  const noop = () => {};
  if (process.env.PEER_DEBUG === '1') {
    const log = level => (...args) => console.error(`[${level}]`, ...args);
    return { info: log('info'), warn: log('warn'), error: log('error'), debug: log('debug') };
  }
  return { info: noop, warn: noop, error: noop, debug: noop };
}

module.exports = { parseArgs, makeLogger };
