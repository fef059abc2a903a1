import { fairness } from "./fairness.js"
import { handoff } from "./handoff.js"
import { hitPath } from "./hitPath.js"
import { memory } from "./memory.js"
import type { Benchmark } from "./report.js"
import { scale } from "./scale.js"
import { scopedSlot } from "./scoped.js"

/** Every benchmark, in the order of issue 3, item 10. */
export const suite: ReadonlyArray<Benchmark> = [hitPath, scopedSlot, scale, memory, fairness, handoff]
