/** The netfilter simulator: compile a rule set once, trace packets through it. */

export {
  type CChain,
  type CompiledRuleSet,
  type CompileOptions,
  type CRule,
  compileRuleSet,
} from "./compile.js";
export { ipsetLookup } from "./ipsets.js";
export { compileContext, Simulator, simulate } from "./simulate.js";
export type * from "./types.js";
