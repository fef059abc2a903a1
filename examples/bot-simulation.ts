/**
 * `npm start`: the simulated bot on the in-memory default. `MAX_USER_QUEUE_SIZE` sets the limit.
 */
import { Console, Effect } from "effect"
import { QueueManager } from "../src/index.js"
import { formatReport, limitsHeld, simulate } from "./simulation.js"

const program = simulate({
  privateChats: 30,
  groups: 10,
  burstsPerChat: 3,
  maxBurst: 6,
  maxDownloadMillis: 400,
  inlineShare: 0.1
}).pipe(
  Effect.tap((report) => Console.log(formatReport(report))),
  Effect.flatMap((report) => (limitsHeld(report) ? Effect.void : Effect.fail("limits did not hold"))),
  Effect.provide(QueueManager.layerConfig())
)

Effect.runPromise(program).catch((error: unknown) => {
  console.error(String(error))
  process.exitCode = 1
})
