import { HashMap, Metric } from "effect"
import type { MetricLabel } from "effect"
import * as QueueMetrics from "../QueueMetrics.js"
import type { Scheduler } from "./scheduler.js"

const reasons = ["user", "global", "waiting", "shutdown"] as const
const refusalsBy = Object.fromEntries(
  reasons.map((reason) => [reason, Metric.tagged(QueueMetrics.refusals, "reason", reason)])
)

/**
 * Reports a scheduler's state to the metrics as the change since its last report, so the
 * gauges of several managers add up. Call it after every step that changes the state.
 */
export const makeReporter = (scheduler: Scheduler) => {
  let inFlight = 0
  let users = 0
  let waiting = 0
  let acquired = 0
  const refused = { user: 0, global: 0, waiting: 0, shutdown: 0 }
  return (labels: ReadonlyArray<MetricLabel.MetricLabel>): void => {
    if (scheduler.inFlight !== inFlight) {
      QueueMetrics.slotsInFlight.unsafeModify(scheduler.inFlight - inFlight, labels)
      inFlight = scheduler.inFlight
    }
    const activeUsers = HashMap.size(scheduler.counts)
    if (activeUsers !== users) {
      QueueMetrics.usersActive.unsafeModify(activeUsers - users, labels)
      users = activeUsers
    }
    if (scheduler.waiting !== waiting) {
      QueueMetrics.requestsWaiting.unsafeModify(scheduler.waiting - waiting, labels)
      waiting = scheduler.waiting
    }
    if (scheduler.acquired !== acquired) {
      QueueMetrics.acquisitions.unsafeUpdate(scheduler.acquired - acquired, labels)
      acquired = scheduler.acquired
    }
    for (const reason of reasons) {
      if (scheduler.refused[reason] !== refused[reason]) {
        refusalsBy[reason]!.unsafeUpdate(scheduler.refused[reason] - refused[reason], labels)
        refused[reason] = scheduler.refused[reason]
      }
    }
  }
}
