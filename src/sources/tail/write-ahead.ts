/**
 * The bytes of read lines handed to the sinks but not yet accepted, over all of a tailer's files.
 *
 * A sink that stores batches in any order (Elasticsearch: ids make order and repeats harmless) lets a file's
 * next reads go out while its earlier bulk requests are indexed. That is what keeps the requests full; it is
 * also memory (each line is held, as bytes and as its encoded document, until accepted), so it is bounded per
 * agent, not per file: 32 files catching up at once must not hold 32 times the budget.
 */
export class WriteAheadBudget {
  /** Bytes handed on and not yet accepted, over all files. */
  used = 0;

  constructor(readonly limit: number) {}

  /** True while a file holding unaccepted batches must wait for its oldest before reading on. */
  get exceeded(): boolean {
    return this.used > this.limit;
  }
}
