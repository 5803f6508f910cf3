/**
 * The stream window of one stream call we opened (spec/PROTOCOL.md §8.6, caller side): the
 * credit we have granted the producer, and when to grant more.
 *
 * Credit is counted as the responder counts it: the initial window plus every grant, less
 * every message started. A message beyond it is the peer's violation (E_NO_CREDIT). Grants
 * go out in batches, once half the window has been consumed (yamux `sendWindowUpdate`),
 * so a steady stream costs one CREDIT frame per half window, not one per message.
 *
 * Adaptive windows (no `credit` set on the call): the window starts at the session's
 * initialCredit and grows fourfold each time the consumer asks for an item and none is
 * there — the window is then too small for the round trip — up to what
 * maxStreamWindowBytes allows for messages of the average size seen. A slow consumer always
 * finds items waiting, so its window never grows; a slow producer may grow it to the byte
 * cap, which bounds it.
 */

/** Largest window an adaptive stream grows to (items). */
const MAX_ADAPTIVE_WINDOW = 65536;

export class StreamWindow {
  /** Messages the producer may still start. */
  private credit: number;
  /** Messages consumed since the last grant. */
  private unacked = 0;
  /** Messages received, and their bytes: the adaptive window sizes itself by the average. */
  private items = 0;
  private bytes = 0;

  /**
   * @param size the window, in messages.
   * @param adaptive it may grow (the call set no credit of its own).
   */
  constructor(
    private size: number,
    private readonly adaptive: boolean,
  ) {
    this.credit = size;
  }

  /** A message starts (its first frame). False when it is beyond the credit granted. */
  take(): boolean {
    if (this.credit <= 0) return false;
    this.credit--;
    return true;
  }

  /** A whole message of `bytes` bytes arrived (and goes to the consumer). */
  received(bytes: number): void {
    this.items++;
    this.bytes += bytes;
  }

  /** The consumer took `n` items. Returns the credit to grant now (a CREDIT frame), or 0. */
  consumed(n: number): number {
    this.unacked += n;
    if (this.unacked * 2 < this.size) return 0;
    const grant = this.unacked;
    this.unacked = 0;
    this.credit += grant;
    return grant;
  }

  /**
   * The consumer waits with nothing queued. Returns the credit that grows the window (one
   * extra CREDIT, no per-item cost), or 0 when it may not grow.
   */
  starved(maxWindowBytes: number): number {
    if (!this.adaptive || this.items === 0) return 0;
    const avg = Math.max(1, this.bytes / this.items);
    const cap = Math.min(MAX_ADAPTIVE_WINDOW, Math.floor(maxWindowBytes / avg));
    const next = Math.min(this.size * 4, cap);
    if (next <= this.size) return 0;
    const grant = next - this.size + this.unacked;
    this.size = next;
    this.unacked = 0;
    this.credit += grant;
    return grant;
  }
}
