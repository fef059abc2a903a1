import { describe } from "@effect/vitest"
import { concurrentProperties } from "./concurrentSlots.js"

describe("properties, long runs", () => {
  concurrentProperties({ plain: 500, scheduled: 800 })
})
