import { defineConfig } from "vitest/config"
import { contract } from "./vitest.config.js"

/**
 * The contract suite on a Redis Cluster (`npm run test:slow` runs it): the behavioural tests
 * every store passes, with a store on a three-master cluster of its own, through an ioredis
 * `Cluster` client passed in; and `test/cluster/`, what only a cluster shows.
 */
export default defineConfig({
  test: {
    include: [...contract, "test/cluster/**/*.test.ts"],
    globalSetup: ["test/cluster/setup.ts"],
    env: { QUEUE_STORE: "cluster" },
    testTimeout: 30_000,
    silent: "passed-only"
  }
})
