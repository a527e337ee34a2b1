/**
 * The few Prometheus metric types the agent uses (counters and gauges, with labels) and the text exposition
 * format (version 0.0.4). A sidecar runs beside every pod, so its memory counts: this replaces prom-client
 * (≈ 8 MiB of RSS and 40 ms of start-up for features the agent does not use). The method names and shapes are
 * prom-client's, so code and tests read the same.
 */

export type Labels = Record<string, string | number>;

export interface MetricValue {
  value: number;
  labels: Labels;
}

interface MetricConfig {
  name: string;
  help: string;
  labelNames?: readonly string[];
  registers?: Registry[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

const escapeHelp = (s: string) => s.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
const escapeLabel = (s: string) => s.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');

function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Number.POSITIVE_INFINITY) return "+Inf";
  if (v === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(v);
}

abstract class Metric {
  readonly name: string;
  readonly help: string;
  private readonly labelNames: readonly string[];
  /** Series by their label values (joined); the unlabelled series is "". */
  private readonly series = new Map<string, MetricValue>();
  abstract readonly type: "counter" | "gauge";

  constructor(cfg: MetricConfig) {
    if (!NAME.test(cfg.name)) throw new Error(`invalid metric name ${cfg.name}`);
    this.name = cfg.name;
    this.help = cfg.help;
    this.labelNames = cfg.labelNames ?? [];
    // An unlabelled metric is exported as 0 from the start; labelled series appear when first touched.
    if (this.labelNames.length === 0) this.series.set("", { value: 0, labels: {} });
    for (const r of cfg.registers ?? []) r.registerMetric(this);
  }

  protected entry(labels: Labels | undefined): MetricValue {
    const given = labels ?? {};
    for (const k of Object.keys(given))
      if (!this.labelNames.includes(k)) throw new Error(`${this.name}: unknown label "${k}"`);
    const key = this.labelNames.map((n) => String(given[n] ?? "")).join("\u0000");
    let e = this.series.get(key);
    if (!e) {
      const ordered: Labels = {};
      for (const n of this.labelNames) if (given[n] !== undefined) ordered[n] = given[n];
      e = { value: 0, labels: ordered };
      this.series.set(key, e);
    }
    return e;
  }

  protected static args(a?: Labels | number, b?: number): [Labels | undefined, number | undefined] {
    return typeof a === "object" ? [a, b] : [undefined, a];
  }

  reset(): void {
    this.series.clear();
    if (this.labelNames.length === 0) this.series.set("", { value: 0, labels: {} });
  }

  async get(): Promise<{ name: string; help: string; type: string; values: MetricValue[] }> {
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      values: [...this.series.values()].map((v) => ({ value: v.value, labels: { ...v.labels } })),
    };
  }

  /** This metric in the Prometheus text format. */
  expose(): string {
    let out = `# HELP ${this.name} ${escapeHelp(this.help)}\n# TYPE ${this.name} ${this.type}\n`;
    for (const { value, labels } of this.series.values()) {
      const ls = Object.entries(labels)
        .map(([k, v]) => `${k}="${escapeLabel(String(v))}"`)
        .join(",");
      out += `${this.name}${ls ? `{${ls}}` : ""} ${formatValue(value)}\n`;
    }
    return out;
  }
}

export class Counter extends Metric {
  readonly type = "counter";

  /** inc(), inc(n), inc(labels), inc(labels, n); a counter only goes up. */
  inc(a?: Labels | number, b?: number): void {
    const [labels, n = 1] = Metric.args(a, b);
    if (!(n >= 0)) throw new Error(`${this.name}: a counter cannot decrease (inc ${n})`);
    this.entry(labels).value += n;
  }
}

export class Gauge extends Metric {
  readonly type = "gauge";

  set(a: Labels | number, b?: number): void {
    const [labels, v] = Metric.args(a, b);
    this.entry(labels).value = v ?? 0;
  }

  inc(a?: Labels | number, b?: number): void {
    const [labels, n = 1] = Metric.args(a, b);
    this.entry(labels).value += n;
  }

  dec(a?: Labels | number, b?: number): void {
    const [labels, n = 1] = Metric.args(a, b);
    this.entry(labels).value -= n;
  }
}

export class Registry {
  readonly contentType = "text/plain; version=0.0.4; charset=utf-8";
  private readonly byName = new Map<string, Metric>();

  registerMetric(m: Metric): void {
    if (this.byName.has(m.name)) throw new Error(`metric ${m.name} is already registered`);
    this.byName.set(m.name, m);
  }

  getSingleMetric(name: string): Metric | undefined {
    return this.byName.get(name);
  }

  async metrics(): Promise<string> {
    return [...this.byName.values()].map((m) => m.expose()).join("\n");
  }
}
