import type { EndpointRow, ServiceRow } from "../store/writer.js";
import { InputError } from "../util/errors.js";

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const obj = (v: unknown): Obj => (isObj(v) ? v : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const strOr = (v: unknown, d: string | null): string | null => (typeof v === "string" ? v : d);
const strings = (v: unknown): string[] => arr(v).filter((x): x is string => typeof x === "string");
const boolOrNull = (v: unknown): boolean | null => (typeof v === "boolean" ? v : null);

export interface KubeSnapshotRows {
  services: ServiceRow[];
  endpoints: EndpointRow[];
  /** Objects of other kinds, counted by kind, for the ingest message. */
  ignored: Record<string, number>;
}

/**
 * `kubectl get svc,endpointslices -A -o json` (a List) or single objects → rows for the store's
 * `services` and `endpoints` tables. Only the fields kube-proxy acts on are extracted; the whole
 * JSON is kept in `inventory.raw_json`.
 */
export function parseKubeJson(text: string, source: string): KubeSnapshotRows {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (error) {
    throw new InputError(
      `invalid JSON: ${(error as Error).message}`,
      { file: source },
      { cause: error },
    );
  }
  const items = isObj(doc) && Array.isArray(doc.items) ? doc.items : [doc];
  const out: KubeSnapshotRows = { services: [], endpoints: [], ignored: {} };
  items.forEach((item, i) => {
    if (!isObj(item)) throw new InputError(`item ${i} is not an object`, { file: source });
    const kind = strOr(item.kind, "") ?? "";
    const meta = obj(item.metadata);
    const name = strOr(meta.name, null);
    const namespace = strOr(meta.namespace, "default") ?? "default";
    if ((kind === "Service" || kind === "EndpointSlice") && name === null) {
      throw new InputError(`item ${i} (${kind}) has no metadata.name`, { file: source });
    }
    if (kind === "Service") {
      const spec = obj(item.spec);
      const clusterIps = strings(spec.clusterIPs);
      const clusterIp = strOr(spec.clusterIP, null);
      if (clusterIps.length === 0 && clusterIp !== null && clusterIp !== "None")
        clusterIps.push(clusterIp);
      const timeout = obj(obj(spec.sessionAffinityConfig).clientIP).timeoutSeconds;
      out.services.push({
        namespace,
        name: name!,
        type: strOr(spec.type, "ClusterIP") ?? "ClusterIP",
        clusterIps,
        ports: arr(spec.ports),
        externalIps: strings(spec.externalIPs),
        loadBalancerIps: arr(obj(obj(item.status).loadBalancer).ingress)
          .map((ing) => strOr(obj(ing).ip, null))
          .filter((ip): ip is string => ip !== null),
        sessionAffinity: strOr(spec.sessionAffinity, null),
        affinityTimeout: typeof timeout === "number" ? timeout : null,
        externalTrafficPolicy: strOr(spec.externalTrafficPolicy, null),
        internalTrafficPolicy: strOr(spec.internalTrafficPolicy, null),
        externalName: strOr(spec.externalName, null),
      });
    } else if (kind === "EndpointSlice") {
      const service = strOr(obj(meta.labels)["kubernetes.io/service-name"], null);
      const ports = arr(item.ports).map(obj);
      for (const ep of arr(item.endpoints).map(obj)) {
        const cond = obj(ep.conditions);
        const ref = obj(ep.targetRef);
        const target =
          typeof ref.kind === "string" && typeof ref.name === "string"
            ? `${ref.kind}/${strOr(ref.namespace, namespace)}/${ref.name}`
            : null;
        for (const address of strings(ep.addresses)) {
          for (const p of ports.length > 0 ? ports : [{}]) {
            out.endpoints.push({
              namespace,
              slice: name!,
              service,
              address,
              portName: strOr(p.name, null),
              port: typeof p.port === "number" ? p.port : null,
              protocol: strOr(p.protocol, p.port === undefined ? null : "TCP"),
              ready: boolOrNull(cond.ready),
              serving: boolOrNull(cond.serving),
              terminating: boolOrNull(cond.terminating),
              nodeName: strOr(ep.nodeName, null),
              target,
            });
          }
        }
      }
    } else {
      out.ignored[kind || "(no kind)"] = (out.ignored[kind || "(no kind)"] ?? 0) + 1;
    }
  });
  return out;
}
