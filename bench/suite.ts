import { fairness } from "./fairness.js"
import { handoff } from "./handoff.js"
import { hitPath } from "./hitPath.js"
import { lines } from "./lines.js"
import { memory } from "./memory.js"
import { promiseFace } from "./promiseFace.js"
import type { Benchmark } from "./report.js"
import { scale } from "./scale.js"
import { redisCycles } from "./redisCycles.js"
import { redisHandoff } from "./redisHandoff.js"
import { redisReclaim } from "./redisReclaim.js"
import { redisRoundTrips } from "./redisRoundTrips.js"
import { scopedSlot } from "./scoped.js"

/** Every benchmark: issue 3, item 10, the waiting lines (issue 14), then the Redis store's (issue 4, item 8). */
export const suite: ReadonlyArray<Benchmark> = [
  hitPath,
  scopedSlot,
  scale,
  memory,
  fairness,
  handoff,
  lines,
  promiseFace,
  redisCycles,
  redisRoundTrips,
  redisHandoff,
  redisReclaim
]
