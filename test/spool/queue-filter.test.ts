import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError } from '../../src/shared/errors.js';
import { decidedByName, matchesFilter, parseQueueFilter, parseSearch, type QueueFilter } from '../../src/spool/queue-filter.js';
import { newQueueId } from '../../src/spool/queue-id.js';
import type { SpoolItem } from '../../src/spool/queue-listing.js';
import { envelope, H, item, M, NOW, recipient } from '../helpers/spool-items.js';

describe('queue filters', () => {
  const greylisted = envelope({
    sender: 'News@Shop.Example',
    arrivedAt: NOW - 3 * H,
    recipients: [recipient('a@gmail.com', 'deferred', '451 4.7.1 Greylisted, try again'), recipient('b@Yahoo.com', 'pending'), recipient('c@done.test', 'delivered', '250 2.0.0 Ok')],
  });
  const bounce = envelope({ sender: '', arrivedAt: NOW - 10 * M, recipients: [recipient('news@shop.example', 'deferred', '421 4.4.2 Connection timed out')] });
  const unreadable = item('corrupt', null, newQueueId(NOW - 2 * H));

  test('each criterion, and all of them together', () => {
    const cases: { name: string; item: SpoolItem; filter: QueueFilter; expected: boolean }[] = [
      { name: 'empty filter matches anything', item: item('deferred', greylisted), filter: {}, expected: true },
      { name: 'empty filter matches an unreadable entry', item: unreadable, filter: {}, expected: true },
      { name: 'state', item: item('deferred', greylisted), filter: { state: 'deferred' }, expected: true },
      { name: 'other state', item: item('deferred', greylisted), filter: { state: 'held' }, expected: false },
      { name: 'failed is corrupt/', item: unreadable, filter: { state: 'failed' }, expected: true },
      { name: 'domain of a deferred recipient', item: item('deferred', greylisted), filter: { domain: 'gmail.com' }, expected: true },
      { name: 'domain of a pending recipient, any case', item: item('deferred', greylisted), filter: { domain: 'YAHOO.com' }, expected: true },
      { name: 'domain given as @domain', item: item('deferred', greylisted), filter: { domain: '@gmail.com' }, expected: true },
      { name: 'domain of a delivered recipient is not pending', item: item('deferred', greylisted), filter: { domain: 'done.test' }, expected: false },
      { name: 'domain is exact, not a suffix', item: item('deferred', greylisted), filter: { domain: 'mail.com' }, expected: false },
      { name: 'no domain in an unreadable entry', item: unreadable, filter: { domain: 'gmail.com' }, expected: false },
      { name: 'sender, any case', item: item('deferred', greylisted), filter: { sender: 'news@shop.example' }, expected: true },
      { name: 'sender in angle brackets', item: item('deferred', greylisted), filter: { sender: '<news@shop.example>' }, expected: true },
      { name: 'other sender', item: item('deferred', greylisted), filter: { sender: 'other@shop.example' }, expected: false },
      { name: '<> is the null sender', item: item('deferred', bounce), filter: { sender: '<>' }, expected: true },
      { name: '<> is not a real sender', item: item('deferred', greylisted), filter: { sender: '<>' }, expected: false },
      { name: 'older than: 3 h old, 2 h asked', item: item('deferred', greylisted), filter: { olderThan: 2 * H }, expected: true },
      { name: 'older than: exactly as old', item: item('deferred', greylisted), filter: { olderThan: 3 * H }, expected: true },
      { name: 'older than: 10 min old, 1 h asked', item: item('deferred', bounce), filter: { olderThan: H }, expected: false },
      { name: 'older than: an unreadable entry by its id', item: unreadable, filter: { olderThan: H }, expected: true },
      { name: 'older than: an unreadable entry too young', item: unreadable, filter: { olderThan: 5 * H }, expected: false },
      { name: 'reply text, any case', item: item('deferred', greylisted), filter: { reply: 'greylisted' }, expected: true },
      { name: 'reply code', item: item('deferred', greylisted), filter: { reply: '451 4.7.1' }, expected: true },
      { name: 'reply of a delivered recipient does not count', item: item('deferred', greylisted), filter: { reply: '250 2.0.0' }, expected: false },
      { name: 'no reply yet', item: item('incoming', envelope({ recipients: [recipient('x@gmail.com', 'pending')] })), filter: { reply: '4' }, expected: false },
      { name: 'all together', item: item('deferred', greylisted), filter: { state: 'deferred', domain: 'gmail.com', sender: 'news@shop.example', olderThan: H, reply: 'try again' }, expected: true },
      { name: 'all but one', item: item('deferred', greylisted), filter: { state: 'deferred', domain: 'gmail.com', sender: 'news@shop.example', olderThan: H, reply: 'mailbox full' }, expected: false },
      { name: 'domain and reply of different recipients still match (any pending one each)', item: item('deferred', greylisted), filter: { domain: 'yahoo.com', reply: 'greylisted' }, expected: true },
      { name: 'to: a substring of any recipient, delivered ones too', item: item('deferred', greylisted), filter: { recipientIncludes: 'DONE.test' }, expected: true },
      { name: 'to: no recipient has it', item: item('deferred', greylisted), filter: { recipientIncludes: 'hotmail' }, expected: false },
      { name: 'from: a substring of the sender, any case', item: item('deferred', greylisted), filter: { senderIncludes: 'shop.EX' }, expected: true },
      { name: 'from: not in the sender', item: item('deferred', greylisted), filter: { senderIncludes: 'bank' }, expected: false },
      { name: 'from: the null sender contains nothing', item: item('deferred', bounce), filter: { senderIncludes: 'shop' }, expected: false },
      { name: 'after: arrived after the bound', item: item('deferred', bounce), filter: { arrivedAfter: NOW - H }, expected: true },
      { name: 'after: arrived before the bound', item: item('deferred', greylisted), filter: { arrivedAfter: NOW - H }, expected: false },
      { name: 'after: the bound itself is included', item: item('deferred', greylisted), filter: { arrivedAfter: NOW - 3 * H }, expected: true },
      { name: 'before: arrived before the bound', item: item('deferred', greylisted), filter: { arrivedBefore: NOW - H }, expected: true },
      { name: 'before: the bound itself is excluded', item: item('deferred', greylisted), filter: { arrivedBefore: NOW - 3 * H }, expected: false },
      { name: 'before: an unreadable entry by its id', item: unreadable, filter: { arrivedBefore: NOW - H }, expected: true },
      { name: 'words: the id', item: item('deferred', greylisted), filter: { words: [greylisted.id.slice(4, 12)] }, expected: true },
      { name: 'words: each word somewhere', item: item('deferred', greylisted), filter: { words: ['gmail', 'news'] }, expected: true },
      { name: 'words: one word nowhere', item: item('deferred', greylisted), filter: { words: ['gmail', 'invoice'] }, expected: false },
      { name: 'words need the envelope', item: unreadable, filter: { words: [unreadable.id] }, expected: false },
    ];
    for (const { name, item: entry, filter, expected } of cases) assert.equal(matchesFilter(entry, filter, NOW), expected, name);
  });
});


describe('the search box', () => {
  test('each term, words, dates and ages', () => {
    const cases: { q: string; expected: QueueFilter }[] = [
      { q: '', expected: {} },
      { q: 'to:bob@', expected: { recipientIncludes: 'bob@' } },
      { q: 'from:news', expected: { senderIncludes: 'news' } },
      { q: 'status:deferred', expected: { state: 'deferred' } },
      { q: 'status:corrupt', expected: { state: 'failed' } },
      { q: 'domain:@Example.com', expected: { domain: 'Example.com' } },
      { q: 'after:2026-11-30', expected: { arrivedAfter: Date.parse('2026-11-30T00:00:00Z') } },
      { q: 'before:2026-11-30T12:00Z', expected: { arrivedBefore: Date.parse('2026-11-30T12:00Z') } },
      { q: 'before:2h', expected: { arrivedBefore: NOW - 2 * H } },
      { q: 'after:30m', expected: { arrivedAfter: NOW - 30 * M } },
      { q: '  invoice   gmail ', expected: { words: ['invoice', 'gmail'] } },
      { q: 'TO:bob unknown:term', expected: { recipientIncludes: 'bob', words: ['unknown:term'] } },
      { q: 'to:a@b.example from:shop status:held domain:b.example after:1h x', expected: { recipientIncludes: 'a@b.example', senderIncludes: 'shop', state: 'held', domain: 'b.example', arrivedAfter: NOW - H, words: ['x'] } },
    ];
    for (const { q, expected } of cases) assert.deepEqual(parseSearch(q, 'q', NOW), expected, q);
  });

  test('refusals name the term', () => {
    const cases: { q: string; message: RegExp }[] = [
      { q: 'to:', message: /q: "to:" needs a value/ },
      { q: 'status:lost', message: /status:: "lost" is not one of incoming, deferred, held, active, failed/ },
      { q: 'domain:a@b', message: /domain:: "a@b" is not a domain/ },
      { q: 'before:yesterday', message: /before: "yesterday" is not a date/ },
      { q: 'after:2026-13-45', message: /after: "2026-13-45" is not a date/ },
      { q: 'to:a to:b', message: /to: is given twice/ },
    ];
    for (const { q, message } of cases) assert.throws(() => parseSearch(q, 'q', NOW), (error: unknown) => error instanceof ConfigError && message.test(error.message), q);
  });

  test('fields are parsed with the caller\'s names in refusals, and q joins the other criteria', () => {
    assert.throws(() => parseQueueFilter({ olderThan: 'soon' }, (field) => (field === 'olderThan' ? 'older_than' : field)), /older_than/);
    assert.throws(() => parseQueueFilter({ state: 'lost' }, () => '--state'), /--state: "lost"/);
    assert.throws(() => parseQueueFilter({ reply: ' ' }, () => 'reply'), /reply must not be empty/);
    const filter = parseQueueFilter({ state: 'deferred', q: 'to:bob' }, String);
    assert.deepEqual(filter, { state: 'deferred', recipientIncludes: 'bob' });
  });

  test('which filters the names alone decide (the queue page reads no envelope for them)', () => {
    const cases: [QueueFilter, boolean][] = [
      [{}, true],
      [{ state: 'held', olderThan: H, arrivedAfter: 1, arrivedBefore: 2 }, true],
      [{ domain: 'a.example' }, false],
      [{ sender: '' }, false],
      [{ reply: '4.7.1' }, false],
      [{ senderIncludes: 'x' }, false],
      [{ recipientIncludes: 'x' }, false],
      [{ words: ['x'] }, false],
      [{ state: 'deferred', words: ['x'] }, false],
    ];
    for (const [filter, expected] of cases) assert.equal(decidedByName(filter), expected, JSON.stringify(filter));
    // An item with no envelope still matches a name-decided filter: unreadable entries stay listable.
    const orphan: SpoolItem = { id: newQueueId(NOW - 2 * H), state: 'corrupt', file: '/spool/corrupt/x.json', envelope: null };
    assert.equal(matchesFilter(orphan, { state: 'failed', olderThan: H }, NOW), true);
    assert.equal(matchesFilter(item('incoming', envelope({ recipients: [recipient('a@b.example', 'pending')] })), { state: 'incoming', arrivedBefore: NOW }, NOW), true);
  });
});
