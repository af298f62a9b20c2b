/**
 * Kubernetes Services and EndpointSlices as `kubectl get svc,endpointslices -A -o json` (or
 * `-o yaml`) prints them: a `List`, a `ServiceList`/`EndpointSliceList`, or single objects.
 * Validated with zod; errors name the path in the document (`items[3].spec.ports[0].port`).
 * Defaults are the API server's (protocol TCP, targetPort = port, ready unset = ready…), so
 * hand-written fixtures mean what a cluster would have stored.
 */

import { parseAllDocuments } from "yaml";
import { z } from "zod";
import { InputError } from "../util/errors.js";
import { normalizeIP } from "../util/ip.js";

export type Protocol = "TCP" | "UDP" | "SCTP";

export interface ServicePortSpec {
  /** "" for a single unnamed port. */
  name: string;
  protocol: Protocol;
  port: number;
  /** Number, a named container port, or the port itself when unset. */
  targetPort: number | string;
  nodePort: number | null;
  appProtocol: string | null;
}

export interface Service {
  namespace: string;
  name: string;
  uid: string | null;
  type: "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName";
  /** clusterIPs (or clusterIP), canonical text; empty for headless and ExternalName. */
  clusterIPs: string[];
  headless: boolean;
  ipFamilies: ("IPv4" | "IPv6")[];
  ports: ServicePortSpec[];
  externalIPs: string[];
  /** status.loadBalancer.ingress[].ip */
  loadBalancerIPs: string[];
  /** status.loadBalancer.ingress[].hostname */
  loadBalancerHostnames: string[];
  loadBalancerSourceRanges: string[];
  sessionAffinity: "None" | "ClientIP";
  /** ClientIP affinity timeout (default 10800 s); null without affinity. */
  affinityTimeoutSeconds: number | null;
  internalTrafficPolicy: "Cluster" | "Local";
  externalTrafficPolicy: "Cluster" | "Local";
  externalName: string | null;
  healthCheckNodePort: number | null;
  /** Epoch seconds. */
  creationTimestamp: number | null;
  deletionTimestamp: number | null;
}

export interface Endpoint {
  addresses: string[];
  /** Unset means ready (API semantics), so these are never null. */
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  nodeName: string | null;
  zone: string | null;
  hostname: string | null;
  /** `Pod/ns/name` when the endpoint has a targetRef. */
  targetRef: string | null;
}

export interface EndpointSlicePort {
  /** "" when unnamed. */
  name: string;
  protocol: Protocol;
  /** null means "all ports" (rare, allowed by the API). */
  port: number | null;
  appProtocol: string | null;
}

export interface EndpointSlice {
  namespace: string;
  name: string;
  /** Label kubernetes.io/service-name; null when missing (not managed for a Service). */
  serviceName: string | null;
  addressType: "IPv4" | "IPv6" | "FQDN";
  endpoints: Endpoint[];
  ports: EndpointSlicePort[];
  creationTimestamp: number | null;
  deletionTimestamp: number | null;
}

export interface InventorySnapshot {
  /** Epoch seconds, from the caller (kubectl output carries no time). */
  takenAt: number | null;
  source: string;
  services: Service[];
  endpointSlices: EndpointSlice[];
  /** Objects of other kinds found in a List (Pods, Endpoints…): named, not parsed. */
  ignored: string[];
}

export interface ParseKubernetesOptions {
  source: string;
  takenAt?: number | null;
}

const port = z.number().int().min(0).max(65535);
const protocol = z.enum(["TCP", "UDP", "SCTP"]);
const timestamp = z.string().nullish();

const metadata = z.looseObject({
  name: z.string(),
  namespace: z.string().optional(),
  uid: z.string().optional(),
  labels: z.record(z.string(), z.string()).nullish(),
  creationTimestamp: timestamp,
  deletionTimestamp: timestamp,
});

const serviceSchema = z.looseObject({
  metadata,
  spec: z.looseObject({
    type: z.enum(["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]).optional(),
    clusterIP: z.string().nullish(),
    clusterIPs: z.array(z.string()).nullish(),
    ipFamilies: z.array(z.enum(["IPv4", "IPv6"])).nullish(),
    ports: z
      .array(
        z.looseObject({
          name: z.string().nullish(),
          protocol: protocol.nullish(),
          port,
          targetPort: z.union([port, z.string()]).nullish(),
          nodePort: port.nullish(),
          appProtocol: z.string().nullish(),
        }),
      )
      .nullish(),
    externalIPs: z.array(z.string()).nullish(),
    loadBalancerSourceRanges: z.array(z.string()).nullish(),
    sessionAffinity: z.enum(["None", "ClientIP"]).nullish(),
    sessionAffinityConfig: z
      .looseObject({
        clientIP: z.looseObject({ timeoutSeconds: z.number().int().nullish() }).nullish(),
      })
      .nullish(),
    internalTrafficPolicy: z.enum(["Cluster", "Local"]).nullish(),
    externalTrafficPolicy: z.enum(["Cluster", "Local"]).nullish(),
    externalName: z.string().nullish(),
    healthCheckNodePort: port.nullish(),
  }),
  status: z
    .looseObject({
      loadBalancer: z
        .looseObject({
          ingress: z
            .array(z.looseObject({ ip: z.string().nullish(), hostname: z.string().nullish() }))
            .nullish(),
        })
        .nullish(),
    })
    .nullish(),
});

const endpointSchema = z.looseObject({
  addresses: z.array(z.string()),
  conditions: z
    .looseObject({
      ready: z.boolean().nullish(),
      serving: z.boolean().nullish(),
      terminating: z.boolean().nullish(),
    })
    .nullish(),
  nodeName: z.string().nullish(),
  zone: z.string().nullish(),
  hostname: z.string().nullish(),
  // discovery.k8s.io/v1beta1
  topology: z.record(z.string(), z.string()).nullish(),
  targetRef: z
    .looseObject({
      kind: z.string().nullish(),
      namespace: z.string().nullish(),
      name: z.string().nullish(),
    })
    .nullish(),
});

const sliceSchema = z.looseObject({
  metadata,
  addressType: z.enum(["IPv4", "IPv6", "FQDN"]),
  endpoints: z.array(endpointSchema).nullish(),
  ports: z
    .array(
      z.looseObject({
        name: z.string().nullish(),
        protocol: protocol.nullish(),
        port: port.nullish(),
        appProtocol: z.string().nullish(),
      }),
    )
    .nullish(),
});

const objectHead = z.looseObject({
  kind: z.string().optional(),
  apiVersion: z.string().optional(),
});

/** Parse kubectl JSON or YAML text into one snapshot. */
export function parseKubernetes(text: string, options: ParseKubernetesOptions): InventorySnapshot {
  const docs = parseDocuments(text, options.source);
  const snap: InventorySnapshot = {
    takenAt: options.takenAt ?? null,
    source: options.source,
    services: [],
    endpointSlices: [],
    ignored: [],
  };
  docs.forEach((doc, d) => {
    const prefix = docs.length > 1 ? `document ${d + 1}: ` : "";
    addObject(snap, doc, "", null, options.source, prefix);
  });
  return snap;
}

/** Validate already-parsed objects (e.g. from an API client). */
export function inventoryFromObjects(
  objects: unknown[],
  options: ParseKubernetesOptions,
): InventorySnapshot {
  const snap: InventorySnapshot = {
    takenAt: options.takenAt ?? null,
    source: options.source,
    services: [],
    endpointSlices: [],
    ignored: [],
  };
  objects.forEach((o, i) => {
    addObject(snap, o, `[${i}]`, null, options.source, "");
  });
  return snap;
}

function parseDocuments(text: string, source: string): unknown[] {
  const trimmed = text.trimStart();
  if (trimmed.startsWith("{") || trimmed.startsWith("[")) {
    try {
      return [JSON.parse(text)];
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      const m = /position (\d+)/.exec(msg);
      const offset = m === null ? jsonErrorOffset(text) : Number(m[1]);
      const line = offset === null ? undefined : text.slice(0, offset).split("\n").length;
      throw new InputError(
        `not valid JSON: ${msg}`,
        line === undefined ? { file: source } : { file: source, line },
        {
          cause: e,
        },
      );
    }
  }
  const docs = parseAllDocuments(text, { prettyErrors: false });
  const out: unknown[] = [];
  for (const doc of Array.isArray(docs) ? docs : [docs]) {
    const err = doc.errors[0];
    if (err !== undefined) {
      const line = err.linePos?.[0]?.line ?? text.slice(0, err.pos[0]).split("\n").length;
      throw new InputError(
        `not valid YAML: ${err.message.split("\n")[0]}`,
        line === undefined ? { file: source } : { file: source, line },
      );
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (e) {
      // Unresolved aliases, alias bombs: the document is not data we can use.
      throw new InputError(
        `not usable YAML: ${e instanceof Error ? e.message : String(e)}`,
        { file: source },
        { cause: e },
      );
    }
    if (value !== null && value !== undefined) out.push(value);
  }
  if (out.length === 0) throw new InputError("no Kubernetes object in the input", { file: source });
  return out;
}

/**
 * Where JSON.parse gave up, for messages (V8 does not always say). A small scanner that only
 * has to find the first offending offset of text already known to be invalid.
 */
export function jsonErrorOffset(text: string): number | null {
  let i = 0;
  const ws = () => {
    while (i < text.length && " \t\r\n".includes(text[i] as string)) i++;
  };
  const value = (depth: number): boolean => {
    if (depth > 10000) return false;
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      ws();
      if (text[i] === "}") return ++i > 0;
      for (;;) {
        ws();
        if (text[i] !== '"' || !str()) return false;
        ws();
        if (text[i] !== ":") return false;
        i++;
        if (!value(depth + 1)) return false;
        ws();
        if (text[i] === ",") i++;
        else if (text[i] === "}") return ++i > 0;
        else return false;
      }
    }
    if (c === "[") {
      i++;
      ws();
      if (text[i] === "]") return ++i > 0;
      for (;;) {
        if (!value(depth + 1)) return false;
        ws();
        if (text[i] === ",") i++;
        else if (text[i] === "]") return ++i > 0;
        else return false;
      }
    }
    if (c === '"') return str();
    const m = /^(?:-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null)/.exec(
      text.slice(i, i + 64),
    );
    if (m === null) return false;
    i += m[0].length;
    return true;
  };
  const str = (): boolean => {
    i++;
    while (i < text.length) {
      const c = text[i];
      if (c === "\\") i += 2;
      else if (c === '"') return ++i > 0;
      else if (c === "\n") return false;
      else i++;
    }
    return false;
  };
  if (!value(0)) return Math.min(i, text.length);
  ws();
  return i < text.length ? i : null;
}

function formatPath(base: string, path: readonly PropertyKey[]): string {
  let out = base;
  for (const p of path)
    out += typeof p === "number" ? `[${p}]` : out === "" ? String(p) : `.${String(p)}`;
  return out === "" ? "(top level)" : out;
}

function validate<T>(
  schema: z.ZodType<T>,
  value: unknown,
  path: string,
  source: string,
  prefix: string,
): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const where = formatPath(path, issue?.path ?? []);
  const reason = (issue?.message ?? "invalid").replace(/^Invalid input: /, "");
  throw new InputError(`${prefix}${where}: ${reason}`, { file: source });
}

function addObject(
  snap: InventorySnapshot,
  value: unknown,
  path: string,
  impliedKind: string | null,
  source: string,
  prefix: string,
): void {
  const head = validate(objectHead, value, path, source, prefix);
  const kind = head.kind ?? impliedKind;
  const obj = value as Record<string, unknown>;
  if (kind?.endsWith("List")) {
    const items = obj["items"];
    if (!Array.isArray(items)) {
      throw new InputError(`${prefix}${formatPath(path, ["items"])}: expected array`, {
        file: source,
      });
    }
    const itemKind = kind === "List" ? null : kind.slice(0, -4);
    items.forEach((item, i) => {
      addObject(snap, item, formatPath(path, ["items", i]), itemKind, source, prefix);
    });
    return;
  }
  if (kind === "Service") {
    snap.services.push(
      toService(validate(serviceSchema, value, path, source, prefix), path, source, prefix),
    );
  } else if (kind === "EndpointSlice") {
    snap.endpointSlices.push(toSlice(validate(sliceSchema, value, path, source, prefix)));
  } else if (kind === null || kind === undefined) {
    throw new InputError(`${prefix}${formatPath(path, ["kind"])}: missing`, { file: source });
  } else {
    const meta = (obj["metadata"] ?? {}) as Record<string, unknown>;
    const ns = typeof meta["namespace"] === "string" ? `${meta["namespace"]}/` : "";
    snap.ignored.push(`${kind} ${ns}${typeof meta["name"] === "string" ? meta["name"] : "?"}`);
  }
}

function toTime(text: string | null | undefined): number | null {
  if (text === null || text === undefined) return null;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? null : ms / 1000;
}

function canonicalIP(text: string, where: string, source: string, prefix: string): string {
  const ip = normalizeIP(text);
  if (ip === null)
    throw new InputError(`${prefix}${where}: not an IP address: ${JSON.stringify(text)}`, {
      file: source,
    });
  return ip;
}

function toService(
  s: z.infer<typeof serviceSchema>,
  path: string,
  source: string,
  prefix: string,
): Service {
  const spec = s.spec;
  const type = spec.type ?? "ClusterIP";
  const rawIPs = spec.clusterIPs ?? (spec.clusterIP ? [spec.clusterIP] : []);
  const headless = rawIPs.includes("None");
  const clusterIPs = headless
    ? []
    : rawIPs
        .filter((ip) => ip !== "")
        .map((ip, i) =>
          canonicalIP(ip, formatPath(path, ["spec", "clusterIPs", i]), source, prefix),
        );
  const ipFamilies =
    spec.ipFamilies ??
    clusterIPs.map((ip) => (ip.includes(":") ? ("IPv6" as const) : ("IPv4" as const)));
  const ingress = s.status?.loadBalancer?.ingress ?? [];
  const affinity = spec.sessionAffinity ?? "None";
  return {
    namespace: s.metadata.namespace ?? "default",
    name: s.metadata.name,
    uid: s.metadata.uid ?? null,
    type,
    clusterIPs: type === "ExternalName" ? [] : clusterIPs,
    headless,
    ipFamilies,
    ports: (spec.ports ?? []).map((p) => ({
      name: p.name ?? "",
      protocol: p.protocol ?? "TCP",
      port: p.port,
      targetPort: p.targetPort ?? p.port,
      nodePort: p.nodePort ?? null,
      appProtocol: p.appProtocol ?? null,
    })),
    externalIPs: (spec.externalIPs ?? []).map((ip, i) =>
      canonicalIP(ip, formatPath(path, ["spec", "externalIPs", i]), source, prefix),
    ),
    loadBalancerIPs: ingress
      .filter((g) => typeof g.ip === "string" && g.ip !== "")
      .map((g) => normalizeIP(g.ip as string) ?? (g.ip as string)),
    loadBalancerHostnames: ingress.flatMap((g) =>
      typeof g.hostname === "string" ? [g.hostname] : [],
    ),
    loadBalancerSourceRanges: spec.loadBalancerSourceRanges ?? [],
    sessionAffinity: affinity,
    affinityTimeoutSeconds:
      affinity === "ClientIP"
        ? (spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? 10800)
        : null,
    internalTrafficPolicy: spec.internalTrafficPolicy ?? "Cluster",
    externalTrafficPolicy: spec.externalTrafficPolicy ?? "Cluster",
    externalName: spec.externalName ?? null,
    healthCheckNodePort: spec.healthCheckNodePort ?? null,
    creationTimestamp: toTime(s.metadata.creationTimestamp),
    deletionTimestamp: toTime(s.metadata.deletionTimestamp),
  };
}

function toSlice(s: z.infer<typeof sliceSchema>): EndpointSlice {
  return {
    namespace: s.metadata.namespace ?? "default",
    name: s.metadata.name,
    serviceName: s.metadata.labels?.["kubernetes.io/service-name"] ?? null,
    addressType: s.addressType,
    endpoints: (s.endpoints ?? []).map((e) => {
      const ready = e.conditions?.ready ?? true;
      const ref = e.targetRef;
      return {
        addresses:
          s.addressType === "FQDN" ? e.addresses : e.addresses.map((a) => normalizeIP(a) ?? a),
        ready,
        // API: serving unset means "same as ready"; terminating unset means false.
        serving: e.conditions?.serving ?? ready,
        terminating: e.conditions?.terminating ?? false,
        nodeName: e.nodeName ?? e.topology?.["kubernetes.io/hostname"] ?? null,
        zone: e.zone ?? e.topology?.["topology.kubernetes.io/zone"] ?? null,
        hostname: e.hostname ?? null,
        targetRef:
          ref === null || ref === undefined
            ? null
            : `${ref.kind ?? "?"}/${ref.namespace ?? s.metadata.namespace ?? "default"}/${ref.name ?? "?"}`,
      };
    }),
    ports: (s.ports ?? []).map((p) => ({
      name: p.name ?? "",
      protocol: p.protocol ?? "TCP",
      port: p.port ?? null,
      appProtocol: p.appProtocol ?? null,
    })),
    creationTimestamp: toTime(s.metadata.creationTimestamp),
    deletionTimestamp: toTime(s.metadata.deletionTimestamp),
  };
}

/** `ns/name`. */
export function serviceKey(svc: { namespace: string; name: string }): string {
  return `${svc.namespace}/${svc.name}`;
}

/** kube-proxy's ServicePortName text: `ns/name:port` (`ns/name` for an unnamed port). */
export function servicePortName(
  svc: { namespace: string; name: string },
  portName: string,
): string {
  return portName === ""
    ? `${svc.namespace}/${svc.name}`
    : `${svc.namespace}/${svc.name}:${portName}`;
}

export interface ResolvedEndpoint {
  ip: string;
  port: number;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  nodeName: string | null;
  zone: string | null;
  slice: string;
}

/**
 * The endpoints of one service port across its slices, as kube-proxy would see them: by the
 * slice port with the same name and protocol. Duplicates across slices are merged.
 */
export function endpointsFor(
  snap: InventorySnapshot,
  svc: Service,
  port: ServicePortSpec,
): ResolvedEndpoint[] {
  const out = new Map<string, ResolvedEndpoint>();
  for (const slice of snap.endpointSlices) {
    if (slice.namespace !== svc.namespace || slice.serviceName !== svc.name) continue;
    if (slice.addressType === "FQDN") continue;
    const sp = slice.ports.find((p) => p.name === port.name && p.protocol === port.protocol);
    if (sp === undefined || sp.port === null) continue;
    for (const e of slice.endpoints) {
      const ip = e.addresses[0];
      if (ip === undefined) continue;
      const key = `${ip}|${sp.port}`;
      if (out.has(key)) continue;
      out.set(key, {
        ip,
        port: sp.port,
        ready: e.ready,
        serving: e.serving,
        terminating: e.terminating,
        nodeName: e.nodeName,
        zone: e.zone,
        slice: slice.name,
      });
    }
  }
  return [...out.values()];
}

export interface InventoryRemoval {
  kind: "service" | "endpoint";
  /** `ns/name` for a service; `ns/name:port ip:port` for an endpoint. */
  key: string;
  /** Time of the last snapshot that had it, and of the first that did not. */
  lastSeen: number | null;
  goneBy: number | null;
}

/** Several snapshots ordered by time: the state at a time, and what disappeared between them. */
export class InventoryTimeline {
  readonly snapshots: InventorySnapshot[];

  constructor(snapshots: InventorySnapshot[]) {
    // Undated snapshots sort first: they are the "before anything" state.
    this.snapshots = [...snapshots].sort(
      (a, b) => (a.takenAt ?? -Infinity) - (b.takenAt ?? -Infinity),
    );
  }

  /** The latest snapshot taken at or before t; null if none. */
  at(t: number): InventorySnapshot | null {
    let best: InventorySnapshot | null = null;
    for (const s of this.snapshots) {
      if ((s.takenAt ?? -Infinity) <= t) best = s;
      else break;
    }
    return best;
  }

  /** Services and endpoints present in one snapshot and absent from the next. */
  removals(): InventoryRemoval[] {
    const out: InventoryRemoval[] = [];
    for (let i = 1; i < this.snapshots.length; i++) {
      const prev = this.snapshots[i - 1] as InventorySnapshot;
      const next = this.snapshots[i] as InventorySnapshot;
      const nextServices = new Set(next.services.map(serviceKey));
      for (const s of prev.services) {
        if (!nextServices.has(serviceKey(s))) {
          out.push({
            kind: "service",
            key: serviceKey(s),
            lastSeen: prev.takenAt,
            goneBy: next.takenAt,
          });
        }
      }
      const nextEps = endpointKeys(next);
      for (const k of endpointKeys(prev)) {
        if (!nextEps.has(k))
          out.push({ kind: "endpoint", key: k, lastSeen: prev.takenAt, goneBy: next.takenAt });
      }
    }
    return out;
  }
}

function endpointKeys(snap: InventorySnapshot): Set<string> {
  const out = new Set<string>();
  for (const svc of snap.services) {
    for (const p of svc.ports) {
      for (const e of endpointsFor(snap, svc, p)) {
        out.add(
          `${servicePortName(svc, p.name)} ${e.ip.includes(":") ? `[${e.ip}]` : e.ip}:${e.port}`,
        );
      }
    }
  }
  return out;
}
