/**
 * How long each reply may take, from the command that asks for it to the final line of the reply (Postfix's
 * smtp_*_timeout defaults, postconf(5)). nodemailer's socketTimeout is an idle timer that every line restarts, so
 * an MX trickling `250-` continuation lines would hold a connection forever; here a continuation line never
 * extends a deadline, only a complete reply ends it.
 */
export type SmtpStage = 'connect' | 'greeting' | 'ehlo' | 'starttls' | 'auth' | 'mail' | 'rcpt' | 'data' | 'body' | 'end-of-data' | 'rset' | 'quit';

export type SmtpDeadlines = Readonly<Record<SmtpStage, number>>;

export const POSTFIX_DEADLINES: SmtpDeadlines = {
  connect: 30_000, // smtp_connect_timeout
  greeting: 300_000, // smtp_helo_timeout covers the banner as well as EHLO/HELO
  ehlo: 300_000, // smtp_helo_timeout
  starttls: 300_000, // smtp_starttls_timeout
  auth: 300_000, // AUTH to a relay host: Postfix has no timeout of its own for SASL, smtp_helo_timeout's value
  mail: 300_000, // smtp_mail_timeout
  rcpt: 300_000, // smtp_rcpt_timeout
  data: 120_000, // smtp_data_init_timeout
  body: 180_000, // smtp_data_xfer_timeout: for each piece of the body handed to the socket
  'end-of-data': 600_000, // smtp_data_done_timeout: the reply to "."
  rset: 300_000, // smtp_rset_timeout
  quit: 300_000, // smtp_quit_timeout
};

/** The command nodemailer wrote → the stage of the reply it waits for. */
export function stageOfCommand(command: string): SmtpStage | null {
  const verb = /^\s*([A-Za-z]+|\.)/.exec(command)?.[1]?.toUpperCase();
  switch (verb) {
    case 'EHLO':
    case 'HELO':
    case 'LHLO':
      return 'ehlo';
    case 'STARTTLS':
      return 'starttls';
    case 'AUTH':
      return 'auth';
    case 'MAIL':
      return 'mail';
    case 'RCPT':
      return 'rcpt';
    case 'DATA':
      return 'data';
    case '.':
      return 'end-of-data';
    case 'RSET':
      return 'rset';
    case 'QUIT':
      return 'quit';
    default:
      return null;
  }
}

/** A reply did not complete in time. Classified by NETWORK_ERRORS (EDEADLINE → 4.4.2). */
export class SmtpDeadlineError extends Error {
  readonly code = 'EDEADLINE';
  constructor(
    readonly stage: SmtpStage,
    readonly deadline: number,
  ) {
    super(`no complete reply to ${stage} within ${deadline} ms`);
  }
}

/**
 * Follows one session's conversation (commands written, complete replies read, body progress) and calls
 * `expire` when the oldest awaited reply is late. Pipelined commands queue their replies, each with a fresh
 * deadline once the one before it is complete.
 */
export class ReplyDeadlines {
  private readonly awaited: SmtpStage[] = [];
  private timer: NodeJS.Timeout | null = null;
  /** Complete replies read so far: a session that got any reply was greeted. */
  replies = 0;
  expired: SmtpDeadlineError | null = null;
  /** The stage the session is in, for a failure's record. */
  current: SmtpStage = 'connect';

  constructor(
    private readonly deadlines: SmtpDeadlines,
    private readonly expire: (error: SmtpDeadlineError) => void,
  ) {}

  /** Waits for one reply of `stage` (e.g. the greeting, once connected). */
  await(stage: SmtpStage): void {
    this.awaited.push(stage);
    if (this.awaited.length === 1) this.arm(stage);
  }

  commandSent(command: string): void {
    // The lines of an AUTH exchange after the first (base64 user name, password) carry no verb of their own.
    const stage = stageOfCommand(command) ?? (this.current === 'auth' ? 'auth' : null);
    if (stage) this.await(stage);
  }

  replyReceived(): void {
    this.replies++;
    const answered = this.awaited.shift();
    this.disarm();
    const next = this.awaited[0];
    if (next) this.arm(next);
    // The body follows the 354 at once: its transfer has a deadline even when it goes in one write.
    else if (answered === 'data') this.arm('body');
  }

  /** Each piece of the body restarts the transfer deadline (Postfix: per write); nothing is awaited meanwhile. */
  bodyProgress(): void {
    if (this.awaited.length === 0) this.arm('body');
  }

  bodyDone(): void {
    if (this.awaited.length === 0) this.disarm();
    this.await('end-of-data');
  }

  /** The operation nodemailer answered is over: nothing is awaited any more (late pipelined replies included). */
  settle(): void {
    this.stop();
  }

  stop(): void {
    this.awaited.length = 0;
    this.disarm();
  }

  private arm(stage: SmtpStage): void {
    this.disarm();
    this.current = stage;
    const deadline = this.deadlines[stage];
    this.timer = setTimeout(() => {
      this.timer = null;
      this.expired = new SmtpDeadlineError(stage, deadline);
      this.expire(this.expired);
    }, deadline);
    this.timer.unref();
  }

  private disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
