import type { GenEndpoint, GenServicePort } from "./kubeproxy-gen.js";
import { type LabPod, type LabService, type Scenario, selects, serviceKey } from "./scenario.js";

/*
 * The cluster's desired state as the API server would hold it: which Services exist and which
 * pods each one's EndpointSlice lists. Nodes load rules generated from a copy of it; a stuck
 * node keeps an old copy. Also renders the state as `kubectl get svc,endpointslices -A -o json`.
 */

export interface ClusterState {
  /** Service key → endpoint pod names, in the order the EndpointSlice lists them. */
  services: Map<string, string[]>;
  resourceVersion: number;
}

export function initialState(scn: Scenario): ClusterState {
  const services = new Map<string, string[]>();
  for (const svc of scn.services) {
    if (svc.absent) continue;
    services.set(serviceKey(svc), selectedPods(scn, svc));
  }
  return { services, resourceVersion: 1000 };
}

export function selectedPods(scn: Scenario, svc: LabService): string[] {
  return scn.pods.filter((p) => selects(svc, p)).map((p) => p.name);
}

export function cloneState(state: ClusterState): ClusterState {
  return {
    services: new Map([...state.services].map(([k, v]) => [k, [...v]])),
    resourceVersion: state.resourceVersion,
  };
}

/** The generator's input for one node: every port of every existing Service. */
export function genServicePorts(scn: Scenario, state: ClusterState): GenServicePort[] {
  const podByName = new Map(scn.pods.map((p) => [p.name, p]));
  const out: GenServicePort[] = [];
  for (const svc of scn.services) {
    const pods = state.services.get(serviceKey(svc));
    if (pods === undefined) continue;
    for (const port of svc.ports) {
      const endpoints: GenEndpoint[] = pods.map((name) => {
        const pod = podByName.get(name) as LabPod;
        return {
          ip: pod.ip,
          port: port.targetPort,
          ready: true,
          serving: true,
          terminating: false,
          nodeName: pod.node,
        };
      });
      out.push({
        namespace: svc.namespace,
        name: svc.name,
        portName: port.name,
        protocol: port.protocol,
        clusterIP: svc.clusterIP,
        port: port.port,
        nodePort: port.nodePort,
        externalIPs: svc.externalIPs,
        loadBalancerIPs: svc.loadBalancerIP !== null ? [svc.loadBalancerIP] : [],
        loadBalancerSourceRanges: svc.loadBalancerSourceRanges,
        sessionAffinityTimeout:
          svc.sessionAffinity === "ClientIP" ? svc.sessionAffinityTimeout : null,
        externalTrafficPolicy: svc.externalTrafficPolicy,
        internalTrafficPolicy: svc.internalTrafficPolicy,
        endpoints,
      });
    }
  }
  return out;
}

function rfc3339(epochSeconds: number): string {
  return `${new Date(Math.floor(epochSeconds) * 1000).toISOString().slice(0, 19)}Z`;
}

/** Deterministic 5-character suffix, like the EndpointSlice controller's generateName. */
function sliceSuffix(key: string): string {
  const alphabet = "bcdfghjklmnpqrstvwxz2456789";
  let h = 2166136261;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 16777619) >>> 0;
  let out = "";
  for (let i = 0; i < 5; i++) {
    out += alphabet[h % alphabet.length];
    h = Math.floor(h / alphabet.length) + 7919 * (i + 1);
  }
  return out;
}

/**
 * `kubectl get svc,endpointslices -A -o json` for the state: a v1 List of Services and
 * discovery.k8s.io/v1 EndpointSlices with the fields kube-proxy reads.
 */
export function inventoryJson(
  scn: Scenario,
  state: ClusterState,
  created: Map<string, number>,
): unknown {
  const podByName = new Map(scn.pods.map((p) => [p.name, p]));
  const items: unknown[] = [];
  for (const svc of scn.services) {
    const key = serviceKey(svc);
    const pods = state.services.get(key);
    if (pods === undefined) continue;
    const createdAt = rfc3339(created.get(key) ?? 0);
    const external = svc.type !== "ClusterIP";
    items.push({
      apiVersion: "v1",
      kind: "Service",
      metadata: {
        name: svc.name,
        namespace: svc.namespace,
        uid: svc.uid,
        resourceVersion: String(state.resourceVersion),
        creationTimestamp: createdAt,
      },
      spec: {
        type: svc.type,
        clusterIP: svc.clusterIP,
        clusterIPs: [svc.clusterIP],
        ipFamilies: ["IPv4"],
        ipFamilyPolicy: "SingleStack",
        selector: svc.selector,
        ports: svc.ports.map((p) => ({
          ...(p.name !== "" ? { name: p.name } : {}),
          protocol: p.protocol,
          port: p.port,
          targetPort: p.targetPort,
          ...(p.nodePort !== null ? { nodePort: p.nodePort } : {}),
        })),
        sessionAffinity: svc.sessionAffinity,
        ...(svc.sessionAffinity === "ClientIP"
          ? { sessionAffinityConfig: { clientIP: { timeoutSeconds: svc.sessionAffinityTimeout } } }
          : {}),
        ...(external ? { externalTrafficPolicy: svc.externalTrafficPolicy } : {}),
        internalTrafficPolicy: svc.internalTrafficPolicy,
        ...(svc.externalIPs.length > 0 ? { externalIPs: svc.externalIPs } : {}),
        ...(svc.loadBalancerIP !== null ? { loadBalancerIP: svc.loadBalancerIP } : {}),
        ...(svc.loadBalancerSourceRanges.length > 0
          ? { loadBalancerSourceRanges: svc.loadBalancerSourceRanges }
          : {}),
        ...(svc.type === "LoadBalancer" ? { allocateLoadBalancerNodePorts: true } : {}),
      },
      status: {
        loadBalancer:
          svc.loadBalancerIP !== null
            ? { ingress: [{ ip: svc.loadBalancerIP, ipMode: "VIP" }] }
            : {},
      },
    });
    const suffix = sliceSuffix(key);
    items.push({
      apiVersion: "discovery.k8s.io/v1",
      kind: "EndpointSlice",
      metadata: {
        name: `${svc.name}-${suffix}`,
        generateName: `${svc.name}-`,
        namespace: svc.namespace,
        uid: `${svc.uid.slice(0, 24)}${suffix}00000`.slice(0, 36),
        resourceVersion: String(state.resourceVersion),
        creationTimestamp: createdAt,
        labels: {
          "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
          "kubernetes.io/service-name": svc.name,
        },
        ownerReferences: [
          {
            apiVersion: "v1",
            kind: "Service",
            name: svc.name,
            uid: svc.uid,
            controller: true,
            blockOwnerDeletion: true,
          },
        ],
      },
      addressType: "IPv4",
      endpoints: pods.map((name) => {
        const pod = podByName.get(name) as LabPod;
        return {
          addresses: [pod.ip],
          conditions: { ready: true, serving: true, terminating: false },
          nodeName: pod.node,
          targetRef: { kind: "Pod", namespace: pod.namespace, name: pod.name },
        };
      }),
      ports: svc.ports.map((p) => ({
        name: p.name,
        protocol: p.protocol,
        port: p.targetPort,
      })),
    });
  }
  return { apiVersion: "v1", kind: "List", metadata: { resourceVersion: "" }, items };
}
