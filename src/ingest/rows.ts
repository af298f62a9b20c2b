import { parseConntrackLine } from "../rules/conntrack.js";
import { parseKubernetes } from "../rules/kubernetes.js";
import type { ConntrackRow, EndpointRow, ServiceRow } from "../store/writer.js";

/**
 * The rules module's parsers, turned into store rows. Conntrack goes line by line, so a bad line
 * fails the file after the rows before it were written — and the file's transaction undoes them.
 */
export function* conntrackRows(text: string, source: string): Generator<ConntrackRow> {
  let lineNo = 0;
  let pos = 0;
  while (pos < text.length) {
    let end = text.indexOf("\n", pos);
    if (end < 0) end = text.length;
    const raw = text.slice(pos, end).replace(/\r$/, "");
    pos = end + 1;
    lineNo++;
    const line = raw.trim();
    // As rules/conntrack.ts parseConntrack: blank lines, comments and the summary line.
    if (line === "" || line[0] === "#" || /^conntrack v\S+ \(conntrack-tools\):/.test(line))
      continue;
    const e = parseConntrackLine(raw, lineNo, source);
    yield {
      line: e.line,
      family: e.family,
      proto: e.protoNumber,
      state: e.state,
      timeout: e.timeout,
      origSrc: e.original.src,
      origDst: e.original.dst,
      origSport: e.original.sport,
      origDport: e.original.dport,
      replySrc: e.reply.src,
      replyDst: e.reply.dst,
      replySport: e.reply.sport,
      replyDport: e.reply.dport,
      mark: e.mark,
      zone: e.zone,
      flags: e.flags,
      raw: e.raw,
    };
  }
}

export interface InventoryRows {
  services: ServiceRow[];
  /** One row per EndpointSlice address × port. */
  endpoints: EndpointRow[];
}

/** `kubectl get svc,endpointslices -A -o json` (or YAML) → rows of `services` and `endpoints`. */
export function inventoryRows(text: string, source: string): InventoryRows {
  const snap = parseKubernetes(text, { source });
  const services: ServiceRow[] = snap.services.map((s) => ({
    namespace: s.namespace,
    name: s.name,
    type: s.type,
    clusterIps: s.clusterIPs,
    ports: s.ports,
    externalIps: s.externalIPs,
    loadBalancerIps: s.loadBalancerIPs,
    sessionAffinity: s.sessionAffinity,
    affinityTimeout: s.affinityTimeoutSeconds,
    externalTrafficPolicy: s.externalTrafficPolicy,
    internalTrafficPolicy: s.internalTrafficPolicy,
    externalName: s.externalName,
  }));
  const endpoints: EndpointRow[] = [];
  for (const slice of snap.endpointSlices) {
    const ports = slice.ports.length > 0 ? slice.ports : [null];
    for (const ep of slice.endpoints) {
      for (const address of ep.addresses) {
        for (const p of ports) {
          endpoints.push({
            namespace: slice.namespace,
            slice: slice.name,
            service: slice.serviceName,
            address,
            portName: p === null ? null : p.name,
            port: p === null ? null : p.port,
            protocol: p === null ? null : p.protocol,
            ready: ep.ready,
            serving: ep.serving,
            terminating: ep.terminating,
            nodeName: ep.nodeName,
            target: ep.targetRef,
          });
        }
      }
    }
  }
  return { services, endpoints };
}
