import { Metric } from "effect"
import type { MetricLabel } from "effect"
import * as QueueMetrics from "../QueueMetrics.js"
import type { Local } from "./store.js"

type Delta = (amount: number, labels: ReadonlyArray<MetricLabel.MetricLabel>) => void

/** Each reported number: how to read it from `Local`, and how to add a change of it to its metric. */
const tracked: ReadonlyArray<readonly [(local: Local) => number, Delta]> = [
  [(l) => l.inFlight, (n, labels) => QueueMetrics.slotsInFlight.unsafeModify(n, labels)],
  [(l) => l.users, (n, labels) => QueueMetrics.usersActive.unsafeModify(n, labels)],
  [(l) => l.waiting, (n, labels) => QueueMetrics.requestsWaiting.unsafeModify(n, labels)],
  [(l) => l.acquired, (n, labels) => QueueMetrics.acquisitions.unsafeUpdate(n, labels)],
  ...(["user", "global", "waiting", "shutdown"] as const).map((reason) => {
    const counter = Metric.tagged(QueueMetrics.refusals, "reason", reason)
    return [
      (l: Local) => l.refused[reason],
      (n: number, labels: ReadonlyArray<MetricLabel.MetricLabel>) => counter.unsafeUpdate(n, labels)
    ] as const
  })
]

/**
 * Reports what this process holds and did to the metrics, as the change since its last
 * report, so the gauges of several managers add up. Call it after every step that changes it.
 */
export const makeReporter = (local: Local) => {
  const reported = tracked.map(() => 0)
  return (labels: ReadonlyArray<MetricLabel.MetricLabel>): void => {
    for (let i = 0; i < tracked.length; i++) {
      const [read, add] = tracked[i]!
      const now = read(local)
      if (now !== reported[i]) {
        add(now - reported[i]!, labels)
        reported[i] = now
      }
    }
  }
}
