import { readFileSync } from "node:fs";
import { join } from "node:path";

/** The shared reference folder sits next to the repository (`../shared`), here and in CI. */
export const referenceDir = join(
  import.meta.dirname,
  "..",
  "..",
  "..",
  "shared",
  "reference",
  "kube-proxy",
);

export function readReference(name: string): string {
  return readFileSync(join(referenceDir, name), "utf8");
}
