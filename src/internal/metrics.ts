import { Metric } from "effect"
import type { MetricLabel } from "effect"
import * as QueueMetrics from "../QueueMetrics.js"
import type { Local } from "./store.js"

const reasons = ["user", "global", "waiting", "shutdown"] as const
const refusalsBy = Object.fromEntries(
  reasons.map((reason) => [reason, Metric.tagged(QueueMetrics.refusals, "reason", reason)])
)

/**
 * Reports what this process holds and did to the metrics, as the change since its last
 * report, so the gauges of several managers add up. Call it after every step that changes it.
 */
export const makeReporter = (local: Local) => {
  let inFlight = 0
  let users = 0
  let waiting = 0
  let acquired = 0
  const refused = { user: 0, global: 0, waiting: 0, shutdown: 0 }
  return (labels: ReadonlyArray<MetricLabel.MetricLabel>): void => {
    if (local.inFlight !== inFlight) {
      QueueMetrics.slotsInFlight.unsafeModify(local.inFlight - inFlight, labels)
      inFlight = local.inFlight
    }
    if (local.users !== users) {
      QueueMetrics.usersActive.unsafeModify(local.users - users, labels)
      users = local.users
    }
    if (local.waiting !== waiting) {
      QueueMetrics.requestsWaiting.unsafeModify(local.waiting - waiting, labels)
      waiting = local.waiting
    }
    if (local.acquired !== acquired) {
      QueueMetrics.acquisitions.unsafeUpdate(local.acquired - acquired, labels)
      acquired = local.acquired
    }
    for (const reason of reasons) {
      if (local.refused[reason] !== refused[reason]) {
        refusalsBy[reason]!.unsafeUpdate(local.refused[reason] - refused[reason], labels)
        refused[reason] = local.refused[reason]
      }
    }
  }
}
