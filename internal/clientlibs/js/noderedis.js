// node-redis's common surface, run against TARGET_* (see harness.js). LIB
// names the package (redis4: 4.x, redis5: 5.x); RESP=3 asks v5 for RESP3.
'use strict';
const { env, sleep, until, sha1, killClients, clientFields, run } = require('./harness');
const redis = require(process.env.LIB || 'redis5');

const v5 = typeof redis.RESP_TYPES === 'object';
const RESP = Number(process.env.RESP || 2);
const P = env.prefix;
const opened = [];

function options(opts = {}) {
  const o = {
    socket: { host: env.host, port: env.port, reconnectStrategy: () => 50 },
    password: env.password, ...opts,
  };
  if (v5) o.RESP = RESP;
  return o;
}
async function connect(opts) {
  const c = redis.createClient(options(opts));
  c.on('error', () => {}); // reconnects are part of the test
  opened.push(c);
  await c.connect();
  return c;
}
let main;

// Scripts: v4 builds arguments with transformArguments, v5 with parseCommand.
const echoKeys = v5
  ? { NUMBER_OF_KEYS: 2, SCRIPT: 'return {KEYS[1], KEYS[2], ARGV[1], redis.call("INCR", KEYS[1])}',
      parseCommand(parser, a, b, arg) { parser.pushKey(a); parser.pushKey(b); parser.push(arg); }, transformReply: (r) => r }
  : { NUMBER_OF_KEYS: 2, SCRIPT: 'return {KEYS[1], KEYS[2], ARGV[1], redis.call("INCR", KEYS[1])}',
      transformArguments: (a, b, arg) => [a, b, arg], transformReply: (r) => r };
const readOnly = v5
  ? { NUMBER_OF_KEYS: 1, SCRIPT: '#!lua flags=no-writes\nreturn redis.call("GET", KEYS[1])', READ_ONLY: true,
      parseCommand(parser, k) { parser.pushKey(k); }, transformReply: (r) => r }
  : { NUMBER_OF_KEYS: 1, SCRIPT: '#!lua flags=no-writes\nreturn redis.call("GET", KEYS[1])',
      transformArguments: (k) => [k], transformReply: (r) => r };
const scripts = { echoKeys: redis.defineScript(echoKeys), readOnly: redis.defineScript(readOnly) };

async function attempt(f) {
  try { return await f(); } catch (e) { return { error: e.message }; }
}

const steps = {
  async connect() {
    main = await connect({ name: 'nr-main', scripts });
    return [await main.ping(), await main.clientGetName()];
  },
  async noAuth() {
    const out = [];
    for (const password of [undefined, 'wrong']) {
      const c = redis.createClient({ ...options({ password }), socket: { host: env.host, port: env.port, reconnectStrategy: false } });
      c.on('error', () => {});
      opened.push(c);
      out.push(await attempt(async () => { await c.connect(); return c.get(P + 'x'); }));
    }
    return out;
  },
  async clientInfo() {
    return clientFields(await main.sendCommand(['CLIENT', 'INFO']));
  },
  async pipeline() {
    const a = await main.multi().set(P + 'p1', 'v1').get(P + 'p1').incr(P + 'p2').hSet(P + 'h', { a: '1', b: '2' })
      .hGetAll(P + 'h').del(P + 'p2').execAsPipeline();
    const b = await Promise.all([main.incr(P + 'p3'), main.incr(P + 'p3'), main.get(P + 'p3'), attempt(() => main.lPush(P + 'p1', 'x'))]);
    return { a, b };
  },
  async multi() {
    const ok = await main.multi().set(P + 'm', '1').incr(P + 'm').get(P + 'm').exec();
    const runErr = await attempt(() => main.multi().set(P + 'ms', 'str').lPush(P + 'ms', 'x').get(P + 'ms').exec());
    const aborted = await attempt(() => main.multi().set(P + 'ma', '1').addCommand(['NOSUCHCOMMAND']).exec());
    const watch = await connect();
    await watch.watch(P + 'w');
    await main.set(P + 'w', 'changed');
    const watched = await attempt(() => watch.multi().set(P + 'w', 'mine').exec());
    return { ok, runErr, aborted, watched, w: await main.get(P + 'w') };
  },
  async scripts() {
    const a = await main.echoKeys(P + 's1', P + 's2', 'arg');
    const b = await main.echoKeys(P + 's1', P + 's2', 'arg');
    const c = await main.readOnly(P + 's1');
    const err = await attempt(() => main.eval('return redis.call("LPUSH", KEYS[1], "x")', { keys: [P + 'm'] }));
    const multi = await main.multi().echoKeys(P + 's1', P + 's2', 'm').readOnly(P + 's1').exec();
    return { a, b, c, err, multi };
  },
  async pubsub() {
    const sub = main.duplicate({ name: 'nr-sub' });
    sub.on('error', () => {});
    opened.push(sub);
    await sub.connect();
    const got = [];
    await sub.subscribe([P + 'c1', P + 'c2'], (m, ch) => got.push(['message', ch, m]));
    await sub.pSubscribe(P + 'p.*', (m, ch) => got.push(['pmessage', ch, m]));
    if (sub.sSubscribe) await sub.sSubscribe(P + 'sh', (m, ch) => got.push(['smessage', ch, m]));
    const list = clientFields((await main.sendCommand(['CLIENT', 'LIST'])).split('\n').find((l) => l.includes(' name=nr-sub ')));
    const counts = [await main.publish(P + 'c1', 'hello'), await main.publish(P + 'p.x', 'pat'), await main.publish(P + 'c2', 'two')];
    if (sub.sSubscribe) counts.push(await main.sPublish(P + 'sh', 'shard'));
    await until(() => got.length >= counts.length);
    if (sub.sUnsubscribe) await sub.sUnsubscribe(P + 'sh');
    await sub.unsubscribe(P + 'c1');
    const afterUnsub = await main.publish(P + 'c1', 'nobody');
    await sub.unsubscribe(P + 'c2'); // bare UNSUBSCRIBE/PUNSUBSCRIBE hang node-redis 4 and 5 when nothing is left
    await sub.pUnsubscribe(P + 'p.*');
    const afterAll = [await main.publish(P + 'c2', 'x'), await main.publish(P + 'p.y', 'x')];
    const normal = await sub.set(P + 'after-sub', '1');
    const listAfter = clientFields((await main.sendCommand(['CLIENT', 'LIST'])).split('\n').find((l) => l.includes(' name=nr-sub ')));
    return { list, counts, got, afterUnsub, afterAll, normal, listAfter };
  },
  async blocking() {
    const t0 = Date.now();
    const empty = await main.blPop(P + 'bl-empty', 0.2);
    const waited = Date.now() - t0 >= 150;
    const b = await connect();
    const p = b.blPop([P + 'bl', P + 'bl2'], 5);
    await sleep(100);
    await main.rPush(P + 'bl2', 'v');
    const popped = await p;
    const bz = await main.bzPopMin(P + 'bz', 0.1);
    return { empty, waited, popped, bz };
  },
  async scanIterator() {
    const m = main.multi();
    for (let i = 0; i < 60; i++) m.set(P + 'scan:' + i, String(i));
    for (let i = 0; i < 50; i++) m.hSet(P + 'hscan', 'f' + i, String(i));
    await m.execAsPipeline();
    const keys = [];
    for await (const k of main.scanIterator({ MATCH: P + 'scan:*', COUNT: 7 })) keys.push(...[].concat(k));
    let fields = 0;
    for await (const f of main.hScanIterator(P + 'hscan', { COUNT: 5 })) fields += [].concat(f).length;
    return { keys: [...new Set(keys)].sort(), fields };
  },
  async selectDB() {
    const c = await connect({ database: 3, name: 'nr-db3' });
    await c.set(P + 'db', 'three');
    const info = clientFields(await c.sendCommand(['CLIENT', 'INFO']));
    await c.select(4);
    const in4 = await c.get(P + 'db');
    await c.select(3);
    return { info, in3: await c.get(P + 'db'), in4, in0: await main.get(P + 'db') };
  },
  async reconnect() {
    const c = await connect({ name: 'nr-re' });
    await c.set(P + 're', '1');
    const sub = await connect({ name: 'nr-re-sub' });
    const got = [];
    await sub.subscribe(P + 're-ch', (m) => got.push(m));
    const killed = (await killClients()) > 0;
    await sleep(300);
    const after = [await c.incr(P + 're'), await c.get(P + 're'), await c.clientGetName()];
    const delivered = await until(async () => (await main.publish(P + 're-ch', 'm')) > 0 && got.length > 0, 5000, 50);
    return { killed, after, delivered: Boolean(delivered) };
  },
  async errors() {
    await main.set(P + 'str', 'x');
    const out = [];
    for (const f of [() => main.lPush(P + 'str', 'a'), () => main.incr(P + 'str'), () => main.sendCommand(['NOSUCHCMD']), () => main.sendCommand(['GET'])]) {
      try { out.push(await f()); } catch (e) { out.push({ error: e.message, name: e.constructor.name }); }
    }
    return out;
  },
  async largeValue() {
    const big = 'x'.repeat(1 << 20) + 'end';
    await main.set(P + 'big', big);
    const back = await main.get(P + 'big');
    const pipe = await main.multi().get(P + 'big').strLen(P + 'big').execAsPipeline();
    return { len: back.length, sha: sha1(back), pipe: [pipe[0].length, pipe[1]] };
  },
  async resp3() {
    if (!v5 || RESP !== 3) return 'n/a';
    await main.hSet(P + 'r3h', { a: '1', b: '2' });
    await main.zAdd(P + 'r3z', [{ score: 1.5, value: 'x' }, { score: 2, value: 'y' }]);
    await main.sAdd(P + 'r3s', ['a', 'b']);
    const hello = await main.sendCommand(['HELLO', '3']);
    const helloKeys = hello instanceof Map ? [...hello.keys()] : Object.keys(hello);
    const out = {
      helloKeys, proto: hello.proto ?? (hello instanceof Map ? hello.get('proto') : undefined),
      hgetall: await main.hGetAll(P + 'r3h'),
      zrange: await main.zRangeWithScores(P + 'r3z', 0, -1),
      smembers: (await main.sMembers(P + 'r3s')).sort(),
      raw: await main.sendCommand(['ZSCORE', P + 'r3z', 'x']),
    };
    // Client-side caching: invalidation arrives as a RESP3 push.
    const cached = await connect({ clientSideCache: { ttl: 0, maxEntries: 0 } });
    await main.set(P + 'csc', 'v1');
    const first = [await cached.get(P + 'csc'), await cached.get(P + 'csc')];
    await main.set(P + 'csc', 'v2');
    const fresh = await until(async () => (await cached.get(P + 'csc')) === 'v2', 3000, 20);
    out.clientSideCache = { first, invalidated: Boolean(fresh), hits: cached.clientSideCache?.stats?.().hitCount > 0 };
    // Pub/sub on RESP3 pushes, and a normal command on the same connection.
    const sub = await connect({ name: 'nr-r3sub' });
    const got = [];
    await sub.subscribe(P + 'r3c', (m) => got.push(m));
    const n = await main.publish(P + 'r3c', 'pushed');
    await until(() => got.length > 0);
    out.pubsub = { n, got, sameConn: await attempt(() => sub.get(P + 'csc')) };
    return out;
  },
};

run(steps, async () => { for (const c of opened) { try { await c.quit(); } catch (e) { /* already closed */ } } });
