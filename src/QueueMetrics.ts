/**
 * The metrics every QueueManager reports, as Effect `Metric`s: read them with
 * `Metric.value`, or export them with an Effect metrics exporter. Gauges are kept as
 * deltas, so several managers in one process add up. No metric is tagged by user id.
 *
 * @since 0.1.0
 */
import { Metric, MetricBoundaries } from "effect"

/**
 * Slots held right now, across all users.
 *
 * @since 0.1.0
 */
export const slotsInFlight = Metric.gauge("queue_manager_slots_in_flight", {
  description: "Slots held right now, across all users"
})

/**
 * Users holding at least one slot right now.
 *
 * @since 0.1.0
 */
export const usersActive = Metric.gauge("queue_manager_users_active", {
  description: "Users holding at least one slot right now"
})

/**
 * Requests waiting for a slot right now (`onFull: "wait"`).
 *
 * @since 0.1.0
 */
export const requestsWaiting = Metric.gauge("queue_manager_requests_waiting", {
  description: "Requests waiting for a slot right now"
})

/**
 * Slots granted, at once or after waiting.
 *
 * @since 0.1.0
 */
export const acquisitions = Metric.counter("queue_manager_acquisitions_total", {
  description: "Slots granted, at once or after waiting",
  incremental: true
})

/**
 * Requests refused, tagged `reason`: `user`, `global`, `waiting` or `shutdown`.
 *
 * @since 0.1.0
 */
export const refusals = Metric.counter("queue_manager_refusals_total", {
  description: "Requests refused, by reason (user, global, waiting, shutdown)",
  incremental: true
})

/**
 * Seconds a request waited before it got its slot (only requests that waited). Tagged
 * `unit: "s"`, which OpenTelemetry exporters read as the instrument's unit.
 *
 * @since 0.1.0
 */
export const waitTime: Metric.Metric.Histogram<number> = Metric.histogram(
  "queue_manager_wait_seconds",
  MetricBoundaries.exponential({ start: 0.001, factor: 2, count: 16 }),
  "Seconds a request waited before it got its slot"
).pipe(Metric.tagged("unit", "s"))
