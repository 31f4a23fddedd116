'use strict';
// amqplib's (npm) round trip through Ferry's AMQP front-end: declare, bind,
// confirmed and mandatory publishes, get, nack with and without requeue,
// prefetch, consume and ack, dead-lettering, cancel.
//
// Usage: node client.js URL. Prints "ok" and exits 0 when every step did
// what RabbitMQ would do.
const amqp = require('amqplib');
const assert = require('node:assert/strict');

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// getOne polls basic.get until the queue has a message (the queue's
// dispatcher reads the topic a moment after the publish is stored).
async function getOne(ch, queue) {
  for (let i = 0; i < 250; i++) {
    const m = await ch.get(queue);
    if (m) return m;
    await sleep(20);
  }
  throw new Error(`basic.get on ${queue} found nothing in 5s`);
}

async function main() {
  const conn = await amqp.connect(process.argv[2]);
  conn.on('error', (err) => { console.error('connection error', err); process.exit(1); });
  const ch = await conn.createConfirmChannel();
  ch.on('error', (err) => { console.error('channel error', err); process.exit(1); });

  await ch.assertExchange('js.events', 'topic', { durable: true });
  await ch.assertExchange('js.dead', 'fanout', { durable: true });
  const q = await ch.assertQueue('js.audit', { durable: true, arguments: { 'x-dead-letter-exchange': 'js.dead' } });
  assert.equal(q.queue, 'js.audit');
  await ch.bindQueue('js.audit', 'js.events', 'user.*');
  const dead = await ch.assertQueue('', { exclusive: true });
  assert.match(dead.queue, /^amq\.gen-/);
  await ch.bindQueue(dead.queue, 'js.dead', '');

  // Confirmed publishes, with properties and typed headers.
  const n = 10;
  for (let i = 0; i < n; i++) {
    ch.publish('js.events', 'user.created', Buffer.from(`m${i}`),
      { contentType: 'text/plain', messageId: `id${i}`, headers: { n: i, who: 'js' } });
  }
  await ch.waitForConfirms();

  // A mandatory publish nobody's binding takes comes back, then is confirmed.
  const returned = new Promise((resolve) => ch.once('return', resolve));
  let confirmedReturn = false;
  ch.publish('js.events', 'order.created', Buffer.from('lost'), { mandatory: true }, (err) => {
    assert.ifError(err);
    confirmedReturn = true;
  });
  const r = await returned;
  assert.equal(r.fields.replyCode, 312);
  assert.equal(r.fields.routingKey, 'order.created');
  assert.equal(r.content.toString(), 'lost');
  await ch.waitForConfirms();
  assert.ok(confirmedReturn, 'the returned publish was not confirmed');

  // basic.get, then nack with requeue: it comes back first, redelivered.
  const got = await getOne(ch, 'js.audit');
  const first = got.content.toString();
  assert.match(first, /^m\d$/);
  assert.equal(got.fields.redelivered, false);
  assert.equal(got.fields.exchange, 'js.events');
  assert.equal(got.fields.routingKey, 'user.created');
  assert.equal(got.properties.contentType, 'text/plain');
  assert.equal(got.properties.messageId, `id${first.slice(1)}`);
  assert.equal(got.properties.headers.n, Number(first.slice(1)));
  assert.equal(got.properties.headers.who, 'js');
  ch.nack(got, false, true);

  // Consume with a prefetch of 2: every message once, the requeued one
  // first and redelivered; the first delivery of m-odd is nacked with
  // requeue and comes again.
  await ch.prefetch(2);
  const seen = new Map();
  let nackedOnce = null;
  let inFlight = 0;
  let maxInFlight = 0;
  const all = new Promise((resolve) => {
    ch.consume('js.audit', (msg) => {
      const body = msg.content.toString();
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      if (seen.size === 0) {
        assert.equal(body, first, 'the requeued message is not delivered first');
        assert.equal(msg.fields.redelivered, true, 'a requeued message is not marked redelivered');
      }
      if (nackedOnce === null && body !== first) {
        nackedOnce = body;
        inFlight--;
        ch.nack(msg, false, true);
        return;
      }
      if (body === nackedOnce) {
        assert.equal(msg.fields.redelivered, true, 'a nacked message is not marked redelivered');
      }
      assert.ok(!seen.has(body), `${body} delivered twice after its ack`);
      seen.set(body, msg.fields.redelivered);
      // Acknowledge later, so that the prefetch is what bounds the deliveries.
      setTimeout(() => { inFlight--; ch.ack(msg); if (seen.size === n) resolve(); }, 5);
    }, { consumerTag: 'js-consumer' });
  });
  await Promise.race([all, sleep(10000).then(() => { throw new Error(`consumed ${seen.size} of ${n}`); })]);
  assert.ok(maxInFlight <= 2, `prefetch 2 but ${maxInFlight} unacknowledged at once`);
  await ch.cancel('js-consumer');

  // nack without requeue: the message is dead-lettered to js.dead.
  ch.publish('js.events', 'user.deleted', Buffer.from('doomed'));
  await ch.waitForConfirms();
  const doomed = await getOne(ch, 'js.audit');
  assert.equal(doomed.content.toString(), 'doomed');
  ch.nack(doomed, false, false);
  const dl = await getOne(ch, dead.queue);
  assert.equal(dl.content.toString(), 'doomed');
  assert.equal(dl.properties.headers['x-first-death-reason'], 'rejected');
  assert.equal(dl.properties.headers['x-first-death-queue'], 'js.audit');
  ch.ack(dl);
  await sleep(200);
  assert.equal(await ch.get('js.audit'), false, 'a message nacked without requeue is still in its queue');

  await ch.deleteQueue('js.audit');
  await ch.deleteExchange('js.events');
  await ch.deleteExchange('js.dead');
  await ch.close();
  await conn.close();
  console.log('ok');
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
