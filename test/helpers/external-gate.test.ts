import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { commandRuns, REQUIRE_EXTERNAL, toolAvailable, type ExternalTool } from './external-clients.js';

/** A TestContext that records its skip message instead of skipping the test that runs this. */
function recordingContext() {
  const skipped: string[] = [];
  return { skipped, t: { skip: (message?: string) => void skipped.push(message ?? '') } };
}

const missingTool = (): ExternalTool => ({
  what: 'mta-test-no-such-client',
  packages: ['mta-fake-package', 'mta-fake-tls-package'],
  probe: () => commandRuns('mta-test-no-such-client-binary', ['--version']),
});

describe('the external-tool gate', () => {
  test('a missing tool skips its test, naming the Debian packages that provide it', async () => {
    const { t, skipped } = recordingContext();
    assert.equal(await toolAvailable(t, missingTool(), {}), false);
    assert.deepEqual(skipped, ['mta-test-no-such-client not installed (Debian: apt-get install mta-fake-package mta-fake-tls-package; .ci/run installs it)']);
    const off = recordingContext();
    assert.equal(await toolAvailable(off.t, missingTool(), { [REQUIRE_EXTERNAL]: '0' }), false, '0 means off');
    assert.equal(off.skipped.length, 1);
  });

  test(`with ${REQUIRE_EXTERNAL}=1 a missing tool fails the test instead`, async () => {
    const { t, skipped } = recordingContext();
    await assert.rejects(toolAvailable(t, missingTool(), { [REQUIRE_EXTERNAL]: '1' }), (error: Error) => {
      assert.match(error.message, /^mta-test-no-such-client not installed \(Debian: apt-get install mta-fake-package mta-fake-tls-package;.*MTA_TEST_REQUIRE_EXTERNAL=1 makes that a failure$/);
      return true;
    });
    assert.deepEqual(skipped, [], 'not skipped');
  });

  test('a tool that runs passes the gate either way', async () => {
    const present: ExternalTool = { what: 'node', packages: ['nodejs'], probe: () => commandRuns(process.execPath, ['--version']) };
    for (const env of [{}, { [REQUIRE_EXTERNAL]: '1' }]) {
      const { t, skipped } = recordingContext();
      assert.equal(await toolAvailable(t, present, env), true);
      assert.deepEqual(skipped, []);
    }
  });
});
