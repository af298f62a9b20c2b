#!/usr/bin/env bash
# Makes this interim sample bundle: one "node" namespace that DNATs a Service VIP to a "pod"
# namespace, a "client" namespace that connects to the VIP, and tcpdump -i any on the node.
# Needs root, iproute2, iptables, tcpdump, curl and python3. Run from this directory.
set -euo pipefail
cd "$(dirname "$0")"
P=svt-st-demo
C=$P-client N=$P-node S=$P-pod
cleanup() {
  [ -n "${TD:-}" ] && kill "$TD" 2>/dev/null || true
  [ -n "${SRV:-}" ] && kill "$SRV" 2>/dev/null || true
  for ns in $C $N $S; do ip netns del "$ns" 2>/dev/null || true; done
}
trap cleanup EXIT
cleanup
for ns in $C $N $S; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip link add c0 netns $C type veth peer name eth0 netns $N
ip link add p0 netns $S type veth peer name veth-pod netns $N
ip -n $C addr add 192.168.50.10/24 dev c0 && ip -n $C link set c0 up
ip -n $N addr add 192.168.50.1/24 dev eth0 && ip -n $N link set eth0 up
ip -n $N addr add 10.244.1.1/24 dev veth-pod && ip -n $N link set veth-pod up
ip -n $S addr add 10.244.1.5/24 dev p0 && ip -n $S link set p0 up
ip -n $C route add default via 192.168.50.1
ip -n $S route add default via 10.244.1.1
ip netns exec $N sysctl -qw net.ipv4.ip_forward=1
# A ClusterIP-like DNAT as kube-proxy writes it (one endpoint, no statistic split).
ip netns exec $N iptables -t nat -N KUBE-SERVICES
ip netns exec $N iptables -t nat -N KUBE-SVC-DEMO
ip netns exec $N iptables -t nat -N KUBE-SEP-DEMO
ip netns exec $N iptables -t nat -A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
ip netns exec $N iptables -t nat -A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m comment --comment "demo/web:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-DEMO
ip netns exec $N iptables -t nat -A KUBE-SVC-DEMO -m comment --comment "demo/web:http -> 10.244.1.5:8080" -j KUBE-SEP-DEMO
ip netns exec $N iptables -t nat -A KUBE-SEP-DEMO -p tcp -m comment --comment "demo/web:http" -m tcp -j DNAT --to-destination 10.244.1.5:8080
ip netns exec $S python3 -m http.server 8080 --bind 10.244.1.5 >/dev/null 2>&1 &
SRV=$!
mkdir -p nodes/node1
T=$(date -u +%Y-%m-%dT%H-%M-%SZ)
ip netns exec $N iptables-save > "nodes/node1/iptables-$T.save"
ip netns exec $N tcpdump -i any -s 1500 -B 16384 -U -w nodes/node1/any.pcap 2>/dev/null &
TD=$!
sleep 1.5
for i in 1 2 3 4 5; do ip netns exec $C curl -s -o /dev/null --max-time 3 http://10.96.0.10/ || true; done
sleep 1
kill -INT $TD; wait $TD 2>/dev/null || true; TD=
ip netns exec $N conntrack -L > "nodes/node1/conntrack-$(date -u +%Y-%m-%dT%H-%M-%SZ).txt" 2>/dev/null
# What `kubectl get svc,endpointslices -A -o json` would have shown for this Service (written by
# hand: there is no API server in the lab), dated with the rule dump.
mkdir -p inventory
cat > "inventory/$T.json" <<'JSON'
{
  "apiVersion": "v1",
  "kind": "List",
  "items": [
    {
      "apiVersion": "v1",
      "kind": "Service",
      "metadata": { "name": "web", "namespace": "demo" },
      "spec": {
        "type": "ClusterIP",
        "clusterIP": "10.96.0.10",
        "clusterIPs": ["10.96.0.10"],
        "ports": [{ "name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080 }],
        "sessionAffinity": "None",
        "internalTrafficPolicy": "Cluster"
      }
    },
    {
      "apiVersion": "discovery.k8s.io/v1",
      "kind": "EndpointSlice",
      "metadata": {
        "name": "web-abcde",
        "namespace": "demo",
        "labels": { "kubernetes.io/service-name": "web" }
      },
      "addressType": "IPv4",
      "endpoints": [
        {
          "addresses": ["10.244.1.5"],
          "conditions": { "ready": true, "serving": true, "terminating": false },
          "nodeName": "node1",
          "targetRef": { "kind": "Pod", "namespace": "demo", "name": "web-0" }
        }
      ],
      "ports": [{ "name": "http", "protocol": "TCP", "port": 8080 }]
    }
  ]
}
JSON
