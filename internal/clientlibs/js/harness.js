// Shared by the library scripts: reads the target from the environment,
// runs named steps with a timeout each, and prints one JSON object
// {step: result} that the Go test compares between a plain Redis and
// replproxy. Errors become {error: message}, so an error reply is a result
// like any other and must be the same on both sides.
'use strict';
const net = require('net');
const crypto = require('crypto');

const env = {
  host: process.env.TARGET_HOST || '127.0.0.1',
  port: Number(process.env.TARGET_PORT),
  password: process.env.TARGET_PASSWORD || undefined,
  // The real Redis nodes behind the target (the plain Redis itself, or the
  // proxy's master and replicas): the connection killer goes there.
  nodes: (process.env.NODE_ADDRS || '').split(',').filter(Boolean),
  nodePassword: process.env.NODE_PASSWORD || undefined,
  prefix: process.env.KEY_PREFIX || 'cl:',
  stepMs: Number(process.env.STEP_TIMEOUT_MS || 8000),
};

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

// until polls f until it returns a truthy value or ms pass; returns the last value.
async function until(f, ms = 3000, every = 20) {
  const end = Date.now() + ms;
  let v;
  for (;;) {
    v = await f();
    if (v || Date.now() > end) return v;
    await sleep(every);
  }
}

function plain(v) {
  if (v instanceof Error) return { error: v.message };
  if (Buffer.isBuffer(v)) return { buffer: v.toString('base64') };
  if (v instanceof Map) return { map: [...v.entries()].map(([k, x]) => [plain(k), plain(x)]) };
  if (v instanceof Set) return { set: [...v].map(plain).sort() };
  if (Array.isArray(v)) return v.map(plain);
  if (typeof v === 'bigint') return { bigint: v.toString() };
  if (v && typeof v === 'object') {
    const o = {};
    for (const k of Object.keys(v)) o[k] = plain(v[k]);
    return o;
  }
  return v === undefined ? null : v;
}

function sha1(s) { return crypto.createHash('sha1').update(s).digest('hex'); }

function resp(args) {
  let s = '*' + args.length + '\r\n';
  for (const a of args) s += '$' + Buffer.byteLength(String(a)) + '\r\n' + a + '\r\n';
  return s;
}

// killClients closes every normal connection on every real node (CLIENT
// KILL TYPE normal): on a plain Redis the library's own; behind the proxy
// the proxy's backend connections. Each reply is one line.
async function killClients() {
  let killed = 0;
  for (const addr of env.nodes) {
    const [host, port] = addr.split(':');
    const cmds = [];
    if (env.nodePassword) cmds.push(['AUTH', env.nodePassword]);
    cmds.push(['CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes']);
    const out = await new Promise((resolve, reject) => {
      const sock = net.connect(Number(port), host);
      let buf = '';
      sock.on('data', (d) => {
        buf += d;
        if (buf.split('\r\n').length - 1 >= cmds.length) { sock.end(); resolve(buf); }
      });
      sock.on('error', reject);
      sock.write(cmds.map(resp).join(''));
    });
    const m = /:(\d+)\r\n$/.exec(out);
    if (!m) throw new Error('CLIENT KILL on ' + addr + ': ' + JSON.stringify(out));
    killed += Number(m[1]);
  }
  return killed;
}

// clientFields keeps the CLIENT INFO / LIST fields that must be the same on
// a plain Redis and through the proxy.
function clientFields(line) {
  const keep = ['name', 'db', 'sub', 'psub', 'ssub', 'multi', 'flags', 'cmd', 'user', 'resp'];
  const o = {};
  for (const kv of String(line).trim().split(' ')) {
    const i = kv.indexOf('=');
    if (keep.includes(kv.slice(0, i))) o[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return o;
}

function withTimeout(p, ms, what) {
  let t;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise((_, rej) => { t = setTimeout(() => rej(new Error('step timed out after ' + ms + ' ms: ' + what)), ms); }),
  ]);
}

// run runs steps in order and prints the results. cleanup runs last, so
// that open connections do not keep node alive.
async function run(steps, cleanup) {
  const results = {};
  const only = process.env.ONLY_STEP;
  for (const [name, f] of Object.entries(steps)) {
    if (only && only !== name && name !== 'connect') continue; // connect makes the shared client
    try {
      results[name] = plain(await withTimeout(Promise.resolve().then(f), env.stepMs, name));
    } catch (e) {
      results[name] = { error: e && e.message ? e.message : String(e) };
    }
  }
  try { await withTimeout(Promise.resolve().then(cleanup), 5000, 'cleanup'); } catch (e) { /* exit anyway */ }
  process.stdout.write(JSON.stringify(results) + '\n', () => process.exit(0));
}

module.exports = { env, sleep, until, plain, sha1, killClients, clientFields, run };
