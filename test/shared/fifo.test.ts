import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Fifo } from '../../src/shared/fifo.js';

test('Fifo keeps order across compaction and interleaved pushes', () => {
  const fifo = new Fifo<number>();
  const taken: number[] = [];
  let next = 0;
  for (let round = 0; round < 50; round++) {
    for (let i = 0; i < 100; i++) fifo.push(next++);
    for (let i = 0; i < 70; i++) taken.push(fifo.shift()!);
  }
  while (fifo.length) taken.push(fifo.shift()!);
  assert.deepEqual(taken, Array.from({ length: next }, (_, i) => i));
  assert.equal(fifo.shift(), undefined);
});
