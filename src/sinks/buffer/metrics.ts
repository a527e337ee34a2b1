import { registry } from "../../observe/metrics.js";
import { Counter, Gauge } from "../../observe/prom.js";

/** The disk buffer's metrics, labelled by the sink they sit in front of. */

export const gaugeBytes = new Gauge({
  name: "ikontainer_buffer_bytes",
  help: "Bytes in the on-disk buffer not yet accepted by the destination",
  labelNames: ["sink"],
  registers: [registry],
});
export const gaugeFull = new Gauge({
  name: "ikontainer_buffer_full",
  help: "1 while the on-disk buffer is at --buffer-max-bytes and reading is paused (backpressure)",
  labelNames: ["sink"],
  registers: [registry],
});
export const counterRetries = new Counter({
  name: "ikontainer_buffer_retries_total",
  help: "Delivery rounds from the on-disk buffer that failed and were retried",
  labelNames: ["sink"],
  registers: [registry],
});
export const counterRejections = new Counter({
  name: "ikontainer_buffer_rejections_total",
  help: "Batches the destination did not accept (connection refused, no ack, error reply); they stay queued",
  labelNames: ["sink"],
  registers: [registry],
});
export const counterDelivered = new Counter({
  name: "ikontainer_buffer_delivered_lines_total",
  help: "Lines delivered from the on-disk buffer to the destination",
  labelNames: ["sink"],
  registers: [registry],
});
export const counterBlocked = new Counter({
  name: "ikontainer_buffer_blocked_writes_total",
  help: "Writes that had to wait because the on-disk buffer was full",
  labelNames: ["sink"],
  registers: [registry],
});
export const counterSkipped = new Counter({
  name: "ikontainer_buffer_reread_lines_skipped_total",
  help: "Lines read again after a crash that were already queued or delivered, and were not queued twice",
  labelNames: ["sink"],
  registers: [registry],
});
export const counterDamagedFrames = new Counter({
  name: "ikontainer_buffer_damaged_frames_total",
  help: "Frames of the on-disk buffer that failed their checksum (corrupted on disk) and were skipped",
  labelNames: ["sink"],
  registers: [registry],
});
export const counterDamagedBytes = new Counter({
  name: "ikontainer_buffer_damaged_bytes_total",
  help: "Bytes of the on-disk buffer skipped because they were damaged (from a damaged frame to the next intact one)",
  labelNames: ["sink"],
  registers: [registry],
});
export const counterDamagedLines = new Counter({
  name: "ikontainer_buffer_damaged_lines_total",
  help: "Lines lost with damaged frames (counted when the damaged frame's header is still readable)",
  labelNames: ["sink"],
  registers: [registry],
});
export const counterDeliveryLogRepairs = new Counter({
  name: "ikontainer_buffer_delivery_log_repairs_total",
  help: "Times delivered.log held an impossible position or garbage and delivery restarted at the queue's start",
  labelNames: ["sink"],
  registers: [registry],
});
