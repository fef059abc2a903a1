import { hitPath } from "./hitPath.js"
import type { Benchmark } from "./report.js"

/** Every benchmark, in the order of issue 3, item 10. */
export const suite: ReadonlyArray<Benchmark> = [hitPath]
