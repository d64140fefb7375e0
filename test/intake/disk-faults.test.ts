import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseNetworks } from '../../src/config/units.js';
import { FaultyFs } from '../helpers/faulty-fs.js';
import { startIntake, type IntakeFixture } from '../helpers/intake-fixture.js';
import { RawSmtpClient } from '../helpers/raw-smtp.js';
import { readSpooled } from '../helpers/spool-reader.js';

/** mta-server over real sockets with its spool behind the fault double: what a client hears when the disk fails. */
describe('mta-server with a failing disk', () => {
  let fixture: IntakeFixture;
  const fs = new FaultyFs();
  before(async () => {
    fixture = await startIntake({ trustedNetworks: parseNetworks('127.0.0.0/8', 'test') }, { spoolFs: fs });
  });
  after(() => fixture.close());

  async function send(body: string): Promise<{ code: number; raw: string }> {
    const { client } = await RawSmtpClient.connect(fixture.port);
    try {
      await client.command('EHLO client.test');
      await client.command('MAIL FROM:<app@shop.example>');
      await client.command('RCPT TO:<someone@a.example>');
      assert.equal((await client.command('DATA')).code, 354);
      client.write(Buffer.from(`${body}\r\n.\r\n`));
      return await client.read();
    } finally {
      client.close();
    }
  }

  test('an fdatasync that fails (EIO) is a 452 4.3.1, nothing is queued, and the next message goes through', async () => {
    fs.failWhen((call) => call.op === 'datasync' && call.path.startsWith(path.join(fixture.spool, 'tmp')), 'EIO');
    const refused = await send('Subject: first\r\n\r\nlost to the disk');
    assert.equal(refused.code, 452);
    assert.match(refused.raw, /^452 4\.3\.1 /);
    const accepted = await send('Subject: second\r\n\r\nmade it');
    assert.equal(accepted.code, 250);
    const id = /queued as ([0-9a-z]{20})/.exec(accepted.raw)![1]!;
    assert.match((await readSpooled(fixture.spool, id)).message.toString(), /made it/);
    const incoming = await fs.readdir(path.join(fixture.spool, 'incoming'));
    assert.equal(incoming.length, 1, `only the second message's batch: ${incoming.join(', ')}`);
  });

  test('a streamed message whose write is slow: no 250 until the write and the fdatasync after it are done', async () => {
    const big = `Subject: big\r\n\r\n${'x'.repeat(998)}\r\n`.repeat(200); // ~200 KB: streams to its own batch file
    const slow = fs.holdWhen((call) => call.op === 'writev' && call.path.startsWith(path.join(fixture.spool, 'tmp')));
    const answer = send(big);
    await slow.reached;
    let answered = false;
    void answer.then(() => (answered = true));
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(answered, false, 'no reply while a write of the message is held');
    slow.release();
    const reply = await answer;
    assert.equal(reply.code, 250, reply.raw);
    const id = /queued as ([0-9a-z]{20})/.exec(reply.raw)![1]!;
    assert.equal((await readSpooled(fixture.spool, id)).message.toString().split('x'.repeat(998)).length - 1, 200, 'every line, in order');
  });
});
