import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConnectionLog } from '../../src/intake/connection-log.js';
import { startIntake, type IntakeFixture } from '../helpers/intake-fixture.js';
import { LogCapture, type LogLine } from '../helpers/log-capture.js';
import { eventually } from '../helpers/queue-harness.js';
import { RawSmtpClient } from '../helpers/raw-smtp.js';

const PER_CONNECTION = ['connect', 'disconnect', 'rejected'];

/** Connect, read the greeting, QUIT (when greeted) and wait for the close: what a reconnect loop does. */
async function reconnect(fixture: IntakeFixture, localAddress: string, times: number): Promise<number[]> {
  const greetings: number[] = [];
  for (let round = 0; round < times; round++) {
    const { client, greeting } = await RawSmtpClient.connect(fixture.port, { localAddress });
    greetings.push(greeting.code);
    if (greeting.code === 220) client.write('QUIT\r\n');
    await client.closed();
  }
  return greetings;
}

function linesFrom(logs: LogCapture, client: string): { written: LogLine[]; summaries: LogLine[]; byEvent: Record<string, number> } {
  const lines = logs.lines().filter((line) => line.client === client);
  const written = lines.filter((line) => PER_CONNECTION.includes(String(line.event)));
  const summaries = lines.filter((line) => line.event === 'connection-log-suppressed');
  const byEvent: Record<string, number> = {};
  for (const line of written) byEvent[String(line.event)] = (byEvent[String(line.event)] ?? 0) + 1;
  for (const line of summaries) for (const [event, count] of Object.entries(line.events as Record<string, number>)) byEvent[event] = (byEvent[event] ?? 0) + count;
  return { written, summaries, byEvent };
}

describe('connection log lines are bounded per client (issue 17)', () => {
  test('60 reconnects from one address: 10 lines, then one summary with the rest counted by event; another address is logged as usual', async () => {
    const fixture = await startIntake({}, { connectionLog: { linesPerClient: 10, window: 3_600_000 } });
    try {
      await reconnect(fixture, '127.0.8.1', 60);
      await reconnect(fixture, '127.0.8.2', 1);
      await eventually(() => fixture.logs.events('disconnect').some((line) => line.client === '127.0.8.2'), 'the other address logged');
      assert.equal(linesFrom(fixture.logs, '127.0.8.1').written.length, 10);
    } finally {
      await fixture.close();
    }
    const { summaries } = linesFrom(fixture.logs, '127.0.8.1');
    assert.equal(summaries.length, 1, 'the summary is written when the server closes, before the window ends');
    assert.deepEqual(summaries[0]!.events, { connect: 55, disconnect: 55 });
    assert.equal(summaries[0]!.suppressed, 110);
    assert.equal(linesFrom(fixture.logs, '127.0.8.2').summaries.length, 0);
  });

  test('refusals at connect count too, and each window ends with its own summary: nothing is lost', async () => {
    const fixture = await startIntake({ maxConnectionsPerIp: 1 }, { connectionLog: { linesPerClient: 5, window: 300 } });
    try {
      const { client: holder } = await RawSmtpClient.connect(fixture.port, { localAddress: '127.0.8.3' });
      const greetings = await reconnect(fixture, '127.0.8.3', 20);
      assert.deepEqual(new Set(greetings), new Set([421]), 'every reconnect refused while one session is held');
      await eventually(() => linesFrom(fixture.logs, '127.0.8.3').summaries.length > 0, 'a window ended with a summary, without waiting for the server to close');
      assert.ok(linesFrom(fixture.logs, '127.0.8.3').written.some((line) => line.event === 'rejected' && line.stage === 'connect'), 'the first refusals are logged in full');
      holder.close();
    } finally {
      await fixture.close();
    }
    const { byEvent } = linesFrom(fixture.logs, '127.0.8.3');
    assert.equal(byEvent.rejected, 20, 'every refusal is a line of its own or counted in a summary');
    assert.equal(byEvent.connect, 1);
  });

  test('an IPv6 client is counted by its /64, so rotating interface ids does not reset its share', () => {
    const logs = new LogCapture();
    const log = new ConnectionLog(logs.logger, { linesPerClient: 3, window: 3_600_000 });
    for (let host = 1; host <= 10; host++) log.write('info', { event: 'connect', client: `2001:db8:1:2::${host.toString(16)}` }, 'connect');
    log.write('info', { event: 'connect', client: '2001:db8:1:3::1' }, 'connect');
    log.flush();
    assert.equal(logs.events('connect').length, 4, 'three from the first /64, one from the next');
    const [summary, ...more] = logs.events('connection-log-suppressed');
    assert.equal(more.length, 0);
    assert.equal(summary!.client, '2001:db8:1:2::/64');
    assert.deepEqual(summary!.events, { connect: 7 });
  });
});
