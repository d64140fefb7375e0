import path from 'node:path';
import { SpoolWriteError } from '../shared/errors.js';
import { encodeRecord, recordHeader, RECORD_HEADER_BYTES } from './batch-file.js';
import { DirectorySync } from './durable.js';
import { serializeEnvelope, type Envelope } from './envelope.js';
import type { SpoolLayout } from './layout.js';
import { removeIfPresent, type SpoolFile, type SpoolFs } from './spool-fs.js';

/**
 * A message is held in memory up to this size and committed with others in one batch; past it, it streams to a
 * batch file of its own in writes of this size. 64 KiB keeps 50 sessions sending 10 MB each at ~120 MB RSS
 * (256 KiB gave ~150 MB) and covers the newsletters a sending platform submits (a few to a few tens of KB).
 */
const MEMORY_LIMIT_BYTES = 64 * 1024;
/** A group commit stops adding messages to its batch file past this size; the rest go in the next one. */
const BATCH_LIMIT_BYTES = 1024 * 1024;

type NewEnvelope = Omit<Envelope, 'id' | 'size'>;

interface PendingRecord {
  id: string;
  parts: Buffer[];
  bytes: number;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/**
 * Puts new messages into the spool (docs/spool.md). A message becomes part of the queue when the batch file
 * holding it appears in `incoming/`, fdatasynced, and `incoming/` is fsynced before `commit` resolves, which is
 * when the client may hear 250. Group commit: messages whose DATA ended while a commit was running all go into
 * the next batch file, so concurrent sessions share one write, one fdatasync, one rename and one directory fsync.
 */
export class MessageWriter {
  private readonly incomingDir: DirectorySync;
  private queue: PendingRecord[] = [];
  private committing = false;

  readonly fs: SpoolFs;

  constructor(private readonly layout: SpoolLayout) {
    this.fs = layout.fs;
    this.incomingDir = new DirectorySync(layout.fs, layout.dir('incoming'));
  }

  /** A new message; nothing touches the disk until it outgrows memory or is committed. */
  create(id: string): MessageDraft {
    return new MessageDraft(id, this);
  }

  /** @internal a small draft's commit: durable with the others of its group. */
  commitInBatch(envelope: Envelope, body: Buffer[]): Promise<void> {
    const parts = encodeRecord(envelope, body);
    return new Promise((resolve, reject) => {
      this.queue.push({ id: envelope.id, parts, bytes: parts.reduce((sum, part) => sum + part.length, 0), resolve, reject });
      if (!this.committing) void this.commitGroups();
    });
  }

  /** @internal a streamed draft's file: the tmp path its batch is written under. */
  tmpBatchPath(id: string): string {
    return path.join(this.layout.dir('tmp'), `${id}.batch`);
  }

  /** @internal renames a complete, fdatasynced batch into the queue and makes that durable. */
  async publish(id: string, tmpPath: string): Promise<void> {
    const finalPath = path.join(this.layout.dir('incoming'), `${id}.batch`);
    try {
      await this.fs.rename(tmpPath, finalPath);
      await this.incomingDir.sync();
    } catch (error) {
      // The queue must never keep a message whose client heard no 250.
      await Promise.allSettled([tmpPath, finalPath].map((file) => removeIfPresent(this.fs, file)));
      throw spoolError('commit', error);
    }
  }

  private async commitGroups(): Promise<void> {
    this.committing = true;
    while (this.queue.length) {
      const group = this.takeGroup();
      try {
        await this.writeBatch(group);
        for (const record of group) record.resolve();
      } catch (error) {
        for (const record of group) record.reject(error);
      }
    }
    this.committing = false;
  }

  private takeGroup(): PendingRecord[] {
    let bytes = 0;
    let count = 0;
    while (count < this.queue.length && (count === 0 || bytes + this.queue[count]!.bytes <= BATCH_LIMIT_BYTES)) bytes += this.queue[count++]!.bytes;
    return this.queue.splice(0, count);
  }

  private async writeBatch(group: PendingRecord[]): Promise<void> {
    // Named after its first message: queue ids are unique, so batch names are too.
    const id = group[0]!.id;
    const tmpPath = this.tmpBatchPath(id);
    try {
      const handle = await this.fs.open(tmpPath, 'wx');
      try {
        await writeAll(handle, group.flatMap((record) => record.parts));
        await handle.datasync();
      } finally {
        await handle.close();
      }
    } catch (error) {
      await removeIfPresent(this.fs, tmpPath).catch(() => undefined);
      throw spoolError('write', error);
    }
    await this.publish(id, tmpPath);
  }
}

/**
 * One message on its way in. Its disk operations (flushes past the memory limit, the commit, a discard) run one
 * after another in the order they were asked for: a commit never fdatasyncs while a flush is still writing, and
 * a discard never unlinks under a write.
 */
export class MessageDraft {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private totalBytes = 0;
  /** Set once the message outgrew memory and streams to its own batch file. */
  private file: { handle: SpoolFile; tmpPath: string; closed: boolean } | undefined;
  /** The last disk operation asked for; the next one starts when it has settled. */
  private tail: Promise<void> = Promise.resolve();
  /** Set by the first failed operation: every later one fails with it, nothing more is written. */
  private failure: unknown;

  constructor(
    readonly id: string,
    private readonly writer: MessageWriter,
  ) {}

  /** Queues bytes; resolves at once unless a write had to happen (callers pause the client meanwhile). */
  append(chunks: Buffer[]): Promise<void> | undefined {
    for (const chunk of chunks) {
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
      this.totalBytes += chunk.length;
    }
    return this.pendingBytes >= MEMORY_LIMIT_BYTES ? this.after(() => this.flush()) : undefined;
  }

  /** Makes the message durable and visible to the queue, after every write asked for before it. */
  commit(envelope: NewEnvelope): Promise<void> {
    return this.after(async () => {
      const complete: Envelope = { ...envelope, id: this.id, size: this.totalBytes };
      if (!this.file) return this.writer.commitInBatch(complete, this.pending);
      await this.flush();
      const { handle, tmpPath } = this.file;
      const json = Buffer.from(serializeEnvelope(complete));
      await this.onFile('sync', async () => {
        await writeAll(handle, [json]);
        await handle.write(recordHeader(this.totalBytes, json.length), 0, RECORD_HEADER_BYTES, 0);
        await handle.datasync();
        await this.closeFile();
      });
      await this.writer.publish(this.id, tmpPath);
    });
  }

  /** Drops the message once any write in flight has settled; safe to call in any state, never throws. */
  async discard(): Promise<void> {
    this.pending = [];
    this.failure ??= new SpoolWriteError('message discarded');
    await this.tail.catch(() => undefined);
    await this.dropFile();
  }

  private after(operation: () => Promise<void>): Promise<void> {
    const run = this.tail.then(async () => {
      if (this.failure !== undefined) throw this.failure;
      try {
        await operation();
      } catch (error) {
        this.failure = error;
        await this.dropFile();
        throw error;
      }
    });
    // The chain goes on after a failure (each later operation rethrows it); only the caller sees the rejection.
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async flush(): Promise<void> {
    if (!this.file) {
      const tmpPath = this.writer.tmpBatchPath(this.id);
      const handle = await this.writer.fs.open(tmpPath, 'wx').catch((error: unknown) => {
        throw spoolError('create', error);
      });
      this.file = { handle, tmpPath, closed: false };
      // The real header replaces this once the size is known.
      this.pending.unshift(recordHeader(0, 0));
    }
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    const { handle } = this.file;
    await this.onFile('write', () => writeAll(handle, batch));
  }

  private async onFile(step: string, action: () => Promise<void>): Promise<void> {
    try {
      await action();
    } catch (error) {
      throw spoolError(step, error);
    }
  }

  private async dropFile(): Promise<void> {
    if (!this.file) return;
    await this.closeFile().catch(() => undefined);
    await removeIfPresent(this.writer.fs, this.file.tmpPath).catch(() => undefined);
  }

  private async closeFile(): Promise<void> {
    if (!this.file || this.file.closed) return;
    this.file.closed = true;
    await this.file.handle.close();
  }
}

/** writev may stop short (a nearly full disk); writeFile loops until the rest is written or fails. */
async function writeAll(handle: SpoolFile, buffers: Buffer[]): Promise<void> {
  const { bytesWritten } = await handle.writev(buffers);
  const total = buffers.reduce((sum, buffer) => sum + buffer.length, 0);
  if (bytesWritten < total) await handle.writeFile(Buffer.concat(buffers).subarray(bytesWritten));
}

function spoolError(step: string, error: unknown): SpoolWriteError {
  if (error instanceof SpoolWriteError) return error;
  return new SpoolWriteError(`spool ${step} failed (${(error as NodeJS.ErrnoException).code ?? 'error'})`, { cause: error });
}
