/**
 * Producer and consumer sharing the namespace `numbers`: the producer writes numbers and keeps a running
 * total with a compare-and-set update; the consumer watches the namespace, reads what it is told about,
 * and at the end checks the total against what it saw.
 *
 *     STATEHOUSE_ADMIN_TOKEN=… npm run example:shared-state
 */
import { connect } from 'statehouse/client';
import { ensureNamespace, registerAgent, url } from './setup.js';

const COUNT = Number(process.env.COUNT ?? 10);

await ensureNamespace('numbers', 'Numbers the producer writes and the consumer reads');
const producerToken = await registerAgent('producer', 'producer', ['numbers']);
const consumerToken = await registerAgent('consumer', 'consumer', ['numbers']);

// Each agent has its own client: its own token, its own socket.
await using producer = connect({ url, token: producerToken });
await using consumer = connect({ url, token: consumerToken });

const numbers = consumer.namespace<number>('numbers');
// The stream starts once ready: every number written after this is seen, once, in order.
const changes = await numbers.watch({ keyPrefix: 'number:' }).whenReady();

const consuming = (async () => {
  let sum = 0;
  let seen = 0;
  for await (const change of changes) {
    if (change.op !== 'SET') continue;
    const entry = await numbers.get(change.key); // what is there now, as any reader would see it
    console.log(`consumer saw ${change.key} = ${change.value} (read back ${entry?.value}, version ${entry?.version}, by ${change.actor})`);
    sum += change.value ?? 0;
    if (++seen === COUNT) break;
  }
  return sum;
})();

const shared = producer.namespace<number>('numbers');
await shared.set('total', 0);
for (let i = 1; i <= COUNT; i++) {
  const value = i * i;
  await shared.set(`number:${i}`, value);
  await shared.update('total', (total = 0) => total + value);
  console.log(`producer wrote number:${i} = ${value}`);
}

const sum = await consuming;
const total = await numbers.get('total');
const listed: string[] = [];
for await (const entry of numbers.list({ prefix: 'number:' })) listed.push(entry.key);
console.log(`consumer: ${listed.length} numbers listed, sum of changes ${sum}, total ${total?.value}`);
if (sum !== total?.value || listed.length < COUNT) process.exitCode = 1;
