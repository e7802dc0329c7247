// ioredis's common surface, run against TARGET_* (see harness.js). LIB
// names the package: ioredis (5.x) or ioredis6.
'use strict';
const { env, sleep, until, sha1, killClients, clientFields, run } = require('./harness');
const Redis = require(process.env.LIB || 'ioredis');

const P = env.prefix;
const opened = [];
function connect(opts = {}) {
  const c = new Redis({
    host: env.host, port: env.port, password: env.password,
    retryStrategy: () => 50, maxRetriesPerRequest: 3, lazyConnect: true, ...opts,
  });
  c.on('error', () => {}); // reconnects are part of the test
  opened.push(c);
  return c;
}
let main;

const steps = {
  async connect() {
    main = connect({ connectionName: 'io-main' });
    await main.connect();
    return [await main.ping(), await main.client('GETNAME')];
  },
  async noAuth() {
    const c = connect({ password: undefined, maxRetriesPerRequest: 0, enableReadyCheck: false });
    await c.connect();
    const out = [];
    for (const f of [() => c.get(P + 'x'), () => c.auth('wrong'), () => c.auth(env.password), () => c.get(P + 'x')]) {
      try { out.push(await f()); } catch (e) { out.push({ error: e.message }); }
    }
    return out;
  },
  async clientInfo() {
    return clientFields(await main.client('INFO'));
  },
  async pipeline() {
    const r = await main.pipeline()
      .set(P + 'p1', 'v1').get(P + 'p1').incr(P + 'p2').lpush(P + 'p1', 'x').hset(P + 'h', 'a', '1', 'b', '2')
      .hgetall(P + 'h').del(P + 'p2').exec();
    return r.map(([e, v]) => (e ? { error: e.message } : v));
  },
  async autoPipelining() {
    const c = connect({ enableAutoPipelining: true });
    await c.connect();
    const ps = [];
    for (let i = 0; i < 50; i++) ps.push(c.incr(P + 'auto'));
    return (await Promise.all(ps)).join(',');
  },
  async multi() {
    const ok = await main.multi().set(P + 'm', '1').incr(P + 'm').get(P + 'm').exec();
    const runErr = await main.multi().set(P + 'ms', 'str').lpush(P + 'ms', 'x').get(P + 'ms').exec();
    let aborted;
    try {
      aborted = await main.multi().set(P + 'ma', '1').call('NOSUCHCOMMAND').exec();
    } catch (e) { aborted = { error: e.message }; }
    const watch = connect();
    await watch.connect();
    await watch.watch(P + 'w');
    await main.set(P + 'w', 'changed');
    const watched = await watch.multi().set(P + 'w', 'mine').exec();
    return { ok, runErr: runErr.map(([e, v]) => (e ? { error: e.message } : v)), aborted, watched, w: await main.get(P + 'w') };
  },
  async scripts() {
    main.defineCommand('echoKeys', { numberOfKeys: 2, lua: 'return {KEYS[1], KEYS[2], ARGV[1], redis.call("INCR", KEYS[1])}' });
    main.defineCommand('readOnly', { numberOfKeys: 1, lua: '#!lua flags=no-writes\nreturn redis.call("GET", KEYS[1])' });
    const a = await main.echoKeys(P + 's1', P + 's2', 'arg');
    const b = await main.echoKeys(P + 's1', P + 's2', 'arg'); // EVALSHA now
    const c = await main.readOnly(P + 's1');
    let err;
    try { await main.eval('return redis.call("LPUSH", KEYS[1], "x")', 1, P + 'm'); } catch (e) { err = e.message; }
    const pipe = await main.pipeline().echoKeys(P + 's1', P + 's2', 'p').readOnly(P + 's1').exec();
    return { a, b, c, err, pipe };
  },
  async pubsub() {
    const sub = connect({ connectionName: 'io-sub' });
    await sub.connect();
    const got = [];
    sub.on('message', (ch, m) => got.push(['message', ch, m]));
    sub.on('pmessage', (pat, ch, m) => got.push(['pmessage', pat, ch, m]));
    const n1 = await sub.subscribe(P + 'c1', P + 'c2');
    const n2 = await sub.psubscribe(P + 'p.*');
    const list = clientFields((await main.client('LIST')).split('\n').find((l) => l.includes(' name=io-sub ')));
    const counts = [
      await main.publish(P + 'c1', 'hello'), await main.publish(P + 'p.x', 'pat'), await main.publish(P + 'c2', 'two'),
    ];
    await until(() => got.length >= 3);
    const u1 = await sub.unsubscribe(P + 'c1');
    const afterUnsub = await main.publish(P + 'c1', 'nobody');
    const u2 = await sub.unsubscribe(P + 'c2'); // ioredis 5 hangs on a bare UNSUBSCRIBE while patterns remain
    const u3 = await sub.punsubscribe();
    const afterAll = [await main.publish(P + 'c2', 'x'), await main.publish(P + 'p.y', 'x')];
    const normal = await sub.set(P + 'after-sub', '1'); // out of subscriber mode again
    const listAfter = clientFields((await main.client('LIST')).split('\n').find((l) => l.includes(' name=io-sub ')));
    return { n1, n2, list, counts, got, u1, afterUnsub, u2, u3, afterAll, normal, listAfter };
  },
  async blocking() {
    const t0 = Date.now();
    const empty = await main.blpop(P + 'bl-empty', 0.2);
    const waited = Date.now() - t0 >= 150;
    const b = connect();
    await b.connect();
    const p = b.blpop(P + 'bl', P + 'bl2', 5);
    await sleep(100);
    await main.rpush(P + 'bl2', 'v');
    const popped = await p;
    const bz = await main.bzpopmin(P + 'bz', 0.1);
    return { empty, waited, popped, bz };
  },
  async scanStream() {
    const pipe = main.pipeline();
    for (let i = 0; i < 60; i++) pipe.set(P + 'scan:' + i, i);
    for (let i = 0; i < 50; i++) pipe.hset(P + 'hscan', 'f' + i, i);
    await pipe.exec();
    const keys = [];
    await new Promise((resolve, reject) => {
      const s = main.scanStream({ match: P + 'scan:*', count: 7 });
      s.on('data', (ks) => keys.push(...ks));
      s.on('end', resolve);
      s.on('error', reject);
    });
    const fields = [];
    await new Promise((resolve, reject) => {
      const s = main.hscanStream(P + 'hscan', { count: 5 });
      s.on('data', (kv) => fields.push(...kv));
      s.on('end', resolve);
      s.on('error', reject);
    });
    return { keys: [...new Set(keys)].sort(), fields: fields.length };
  },
  async selectDB() {
    const c = connect({ db: 3, connectionName: 'io-db3' });
    await c.connect();
    await c.set(P + 'db', 'three');
    const info = clientFields(await c.client('INFO'));
    await c.select(4);
    const in4 = await c.get(P + 'db');
    await c.select(3);
    return { info, in3: await c.get(P + 'db'), in4, in0: await main.get(P + 'db') };
  },
  async reconnect() {
    const c = connect({ connectionName: 'io-re' });
    await c.connect();
    await c.set(P + 're', '1');
    const sub = connect({ connectionName: 'io-re-sub' });
    await sub.connect();
    const got = [];
    sub.on('message', (ch, m) => got.push(m));
    await sub.subscribe(P + 're-ch');
    const killed = (await killClients()) > 0;
    await sleep(300);
    const after = [await c.incr(P + 're'), await c.get(P + 're'), await c.client('GETNAME')];
    // The subscriber must be subscribed again (ioredis resubscribes on
    // reconnect; the proxy must not keep a client whose subscription died).
    const n = await until(async () => (await main.publish(P + 're-ch', 'm')) > 0 && got.length > 0, 5000, 50);
    return { killed, after, delivered: Boolean(n) };
  },
  async errors() {
    await main.set(P + 'str', 'x');
    const out = [];
    for (const f of [() => main.lpush(P + 'str', 'a'), () => main.incr(P + 'str'), () => main.call('NOSUCHCMD'), () => main.get()]) {
      try { out.push(await f()); } catch (e) { out.push({ error: e.message, name: e.name }); }
    }
    return out;
  },
  async largeValue() {
    const big = 'x'.repeat(1 << 20) + 'end';
    await main.set(P + 'big', big);
    const back = await main.get(P + 'big');
    const buf = await main.getBuffer(P + 'big');
    const r = await main.pipeline().get(P + 'big').strlen(P + 'big').exec();
    return { len: back.length, sha: sha1(back), buf: buf.length, pipe: [r[0][1].length, r[1][1]] };
  },
};

run(steps, async () => { for (const c of opened) c.disconnect(); });
