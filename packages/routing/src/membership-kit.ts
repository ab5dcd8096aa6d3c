/**
 * @packageDocumentation
 * The membership, placement and lookup parts of the router as plain code without libp2p (`@kadmirror/routing/membership`):
 * a simulator or another transport drives the same code the router runs. See the README's "Large clusters".
 */
export { ConnectionPlan, type ConnectionPlanInit } from './connection-plan.ts'
export { KadIndex } from './kad-index.ts'
export { compareDistance, kadId } from './keys.ts'
export {
  antiEntropyIntervalMs,
  type Clock,
  type Liveness,
  MapMemberStore,
  type MemberRecord,
  type MemberStore,
  MemberTable,
  type MemberTableInit,
  reachable,
  sameClaim,
  supersedes,
  systemClock,
  tombstoneRetryDelayMs
} from './member-table.ts'
export { type Handoff, type PlacedRecord, Placement, type PlacementInit } from './placement.ts'
export { pickRandom } from './random-pick.ts'
export { RumorQueue, retransmitLimit } from './rumors.ts'
export {
  closest,
  connectedHoldersFirst,
  type LookupOutcome,
  type LookupPeer,
  type LookupStrategyInit,
  runLookupStrategy,
  type Timers
} from './strategy.ts'
export { VirtualClock } from './virtual-clock.ts'
