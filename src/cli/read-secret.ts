import type { ReadStream } from 'node:tty';

/** Reads one line from stdin; on a terminal the prompt goes to stderr and nothing typed is echoed. */
export async function readSecret(prompt: string): Promise<string> {
  const input = process.stdin;
  if (!input.isTTY) {
    let text = '';
    for await (const chunk of input) text += chunk;
    return text.split(/\r?\n/)[0] ?? '';
  }
  process.stderr.write(prompt);
  const tty = input as ReadStream;
  tty.setRawMode(true);
  tty.setEncoding('utf8');
  return new Promise((resolve, reject) => {
    let secret = '';
    const finish = (result: () => void) => {
      tty.setRawMode(false);
      tty.pause();
      tty.removeListener('data', onData);
      process.stderr.write('\n');
      result();
    };
    const onData = (chunk: string) => {
      for (const char of chunk) {
        if (char === '\r' || char === '\n') return finish(() => resolve(secret));
        if (char === '\u0003') return finish(() => reject(new Error('interrupted')));
        if (char === '\u007f' || char === '\b') secret = secret.slice(0, -1);
        else secret += char;
      }
    };
    tty.on('data', onData);
    tty.resume();
  });
}
