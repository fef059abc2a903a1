import { createConnection } from "node:net"
import { availableParallelism } from "node:os"
import { defineConfig, type ViteUserConfig } from "vitest/config"

/** The behavioural tests that run against every store (the Redis project runs them on Redis). */
export const contract = [
  "semantics",
  "slot",
  "waiting",
  "limits",
  "status",
  "sequentialChats",
  "promise",
  "shutdown",
  "observability",
  "fencing"
].map((name) => `test/${name}.test.ts`)

const redisUrl = new URL(process.env["REDIS_URL"] ?? "redis://127.0.0.1:6379")

/** Whether something answers on the Redis port (a quick TCP check; the tests say more if it is not Redis). */
const reachable = () =>
  new Promise<boolean>((resolve) => {
    const socket = createConnection({ host: redisUrl.hostname, port: Number(redisUrl.port || 6379) })
    socket.setTimeout(1000)
    socket.once("connect", () => (socket.destroy(), resolve(true)))
    socket.once("error", () => resolve(false))
    socket.once("timeout", () => (socket.destroy(), resolve(false)))
  })

export default defineConfig(async (): Promise<ViteUserConfig> => {
  const redis = process.env["CI"] === "true" || (await reachable())
  if (!redis)
    console.warn(`Redis is not reachable at ${redisUrl.href}: skipping the Redis tests (under CI=true they run)`)
  return {
    test: {
      testTimeout: 30_000,
      // vitest leaves a core to itself by default: one worker on a 2-core machine, though the
      // suites spend much of their time waiting on Redis and sockets
      maxWorkers: Math.max(2, availableParallelism()),
      // what a test logs is shown when it fails, not when it passes
      silent: "passed-only",
      projects: [
        {
          extends: true as const,
          test: {
            name: "memory",
            include: ["test/**/*.test.ts"],
            exclude: ["test/redis/**", "test/cluster/**", "test/**/*.slow.test.ts"]
          }
        },
        ...(redis
          ? [
              {
                extends: true as const,
                test: {
                  name: "redis",
                  include: [...contract, "test/redis/**/*.test.ts"],
                  exclude: ["test/**/*.slow.test.ts"],
                  env: { QUEUE_STORE: "redis" }
                }
              }
            ]
          : [])
      ]
    }
  }
})
