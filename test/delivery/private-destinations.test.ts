import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { resolveQueueConfig, type QueueConfig } from '../../src/config/queue-config.js';
import { mxTransport } from '../../src/delivery/mx-transport.js';
import { QueueRunner } from '../../src/delivery/queue-runner.js';
import { startDeliveryFixture, type DeliveryFixture } from '../helpers/delivery-fixture.js';
import { readSpooled } from '../helpers/spool-reader.js';

const MESSAGE = 'From: app@shop.example\nSubject: hi\n\nBody\n';

/**
 * MXes that point inside our own network (shared/design/cli.md, "Lab set-ups"). The MX is a real one on a loopback
 * address; only the port it listens on differs from what a port-25 configuration would dial, so the decision is
 * made exactly as in production and the MX counts whether anything reached it.
 */
describe('MX addresses on loopback, private or link-local networks', () => {
  let f: DeliveryFixture;
  const mx = () => f.mx.mxes[0]!;

  /** One `mta-queue --once` pass with the lab setting that these flags resolve to, towards the fixture's MX port. */
  async function runOnceWith(flags: Parameters<typeof resolveQueueConfig>[0], extra: Partial<QueueConfig> = {}): Promise<void> {
    const { allowPrivateDestinations } = resolveQueueConfig(flags, 'relay.test');
    const config: QueueConfig = { ...f.config, allowPrivateDestinations, ...extra };
    const runner = new QueueRunner(config, f.deps({ transport: mxTransport(config, f.resolver, f.clock) }));
    await runner.start({ watch: false });
    await runner.drain();
    await runner.close();
  }

  const recipientOf = async (id: string) => (await readSpooled(f.layout.root, id)).envelope.recipients[0]!;

  before(async () => {
    f = await startDeliveryFixture([{ name: 'mx.lab.test' }], (hosts) => ({
      'lab.test': { mx: [{ preference: 10, exchange: 'mx.lab.test' }] },
      'mx.lab.test': { a: [hosts[0]!] },
    }));
  });
  after(() => f.close());

  test('--smtp-port 25 without --allow-private-destinations: a loopback MX is not dialled, the recipient defers (4.4.4) with why', async () => {
    const id = await f.enqueue('app@shop.example', ['bob@lab.test'], MESSAGE);
    await runOnceWith({ smtpPort: '25' });
    assert.equal(mx().sessions, 0, 'nothing connected to the loopback MX');
    const recipient = await recipientOf(id);
    assert.equal(recipient.state, 'deferred');
    assert.deepEqual(recipient.lastReply, { code: null, enhanced: '4.4.4', text: `MX mx.lab.test resolves only to loopback address ${mx().host}; not connecting` });
    const [refused] = f.logs.events('mx-address-refused');
    assert.deepEqual([refused?.queueId, refused?.domain, refused?.mx, refused?.refused, refused?.count], [id, 'lab.test', 'mx.lab.test', [`loopback address ${mx().host}`], 1]);
  });

  test('a recipient domain written as a loopback address literal is refused the same way', async () => {
    const id = await f.enqueue('app@shop.example', [`bob@[${mx().host}]`], MESSAGE);
    await runOnceWith({ smtpPort: '25' });
    assert.equal(mx().sessions, 0);
    const recipient = await recipientOf(id);
    assert.equal(recipient.state, 'deferred');
    assert.equal(recipient.lastReply?.enhanced, '4.4.4');
  });

  test('--allow-private-destinations: the same loopback MX is dialled and takes the mail', async () => {
    await f.enqueue('app@shop.example', ['carol@lab.test'], MESSAGE);
    await runOnceWith({ smtpPort: '25', allowPrivateDestinations: 'yes' });
    assert.equal(mx().messages.filter((mail) => mail.to.includes('carol@lab.test')).length, 1);
  });

  test('--relay-host on loopback is the operator\'s choice: dialled without the flag', async () => {
    const id = await f.enqueue('app@shop.example', ['dave@lab.test'], MESSAGE);
    await runOnceWith({ smtpPort: '25' }, { relayHost: { host: mx().host, port: f.mx.port, credentials: null, tls: 'may', trustedCas: null } });
    assert.ok(mx().messages.some((mail) => mail.to.includes('dave@lab.test')));
    assert.equal((await f.files('deferred')).filter((name) => name.includes(id)).length, 0);
  });
});
