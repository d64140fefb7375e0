import assert from 'node:assert/strict';
import { test } from 'node:test';
import { resolveQueueConfig } from '../../src/config/queue-config.js';
import { ConfigError } from '../../src/shared/errors.js';

test('a lab set-up (private MX addresses dialled) is --allow-private-destinations or --smtp-port other than 25', () => {
  for (const [flags, lab] of [
    [{}, false],
    [{ smtpPort: '25' }, false],
    [{ smtpPort: '25', allowPrivateDestinations: 'no' }, false],
    [{ smtpPort: '25', allowPrivateDestinations: 'yes' }, true],
    [{ smtpPort: '25', allowPrivateDestinations: '1' }, true],
    [{ smtpPort: '25', allowPrivateDestinations: 'FALSE' }, false],
    [{ smtpPort: '2525' }, true],
    [{ smtpPort: '2525', allowPrivateDestinations: 'no' }, true],
  ] as const) assert.equal(resolveQueueConfig(flags, 'h').allowPrivateDestinations, lab, JSON.stringify(flags));
});

test('--allow-private-destinations takes yes or no, nothing else', () => {
  assert.throws(
    () => resolveQueueConfig({ allowPrivateDestinations: 'maybe' }, 'h'),
    (error: unknown) => error instanceof ConfigError && error.message === '--allow-private-destinations: "maybe" is not yes or no',
  );
});
