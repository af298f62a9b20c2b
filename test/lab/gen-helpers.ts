import type { GenEndpoint, GenServicePort } from "../../src/lab/kubeproxy-gen.js";

/** A ready endpoint on port 80, as the generator tests build them. */
export function ep(ip: string, nodeName: string | null = null): GenEndpoint {
  return { ip, port: 80, ready: true, serving: true, terminating: false, nodeName };
}

/** A ClusterIP Service port `ns/name:p80` (TCP 80), overridden by `more`. */
export function svc(
  ns: string,
  name: string,
  clusterIP: string,
  more: Partial<GenServicePort>,
): GenServicePort {
  return {
    namespace: ns,
    name,
    portName: "p80",
    protocol: "TCP",
    clusterIP,
    port: 80,
    nodePort: null,
    externalIPs: [],
    loadBalancerIPs: [],
    loadBalancerSourceRanges: [],
    sessionAffinityTimeout: null,
    externalTrafficPolicy: "Cluster",
    internalTrafficPolicy: "Cluster",
    endpoints: [],
    ...more,
  };
}
