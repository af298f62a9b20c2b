import { describe, expect, it } from "vitest";
import { parseIptablesSave } from "../../src/rules/iptables-save.js";
import {
  endpointChainName,
  endpointString,
  kubeChainHash,
  kubeChainKind,
  portProtoHash,
  serviceChainName,
  serviceExternalChainName,
  serviceFirewallChainName,
  serviceLocalChainName,
} from "../../src/rules/kube-names.js";
import { readReference } from "./reference.js";

describe("kube-proxy chain names", () => {
  it("match the names in upstream's expected rules (02)", () => {
    expect(serviceChainName("ns1/svc1:p80", "tcp")).toBe("KUBE-SVC-XPGD46QRK7WJZT7O");
    expect(serviceChainName("ns2/svc2:p80", "TCP")).toBe("KUBE-SVC-GNZBNJ2PO5MGZ6GT");
    expect(serviceExternalChainName("ns2/svc2:p80", "tcp")).toBe("KUBE-EXT-GNZBNJ2PO5MGZ6GT");
    expect(serviceFirewallChainName("ns5/svc5:p80", "tcp")).toBe("KUBE-FW-NUKIZ6OKUXPJNT4C");
    expect(serviceLocalChainName("ns5/svc5:p80", "tcp")).toBe("KUBE-SVL-NUKIZ6OKUXPJNT4C");
    expect(endpointChainName("ns1/svc1:p80", "tcp", "10.180.0.1:80")).toBe(
      "KUBE-SEP-SXIVWICOYRO3J4NJ",
    );
    expect(endpointChainName("ns4/svc4:p80", "tcp", "10.180.0.5:80")).toBe(
      "KUBE-SEP-C6EBXVWJJZMIWKLZ",
    );
    expect(endpointChainName("ns5/svc5:p80", "tcp", "10.180.0.3:80")).toBe(
      "KUBE-SEP-I77PXRDZVX7PMWMN",
    );
    // 04: svc2 on port p8080 and svc3's moved endpoint.
    expect(serviceChainName("ns2/svc2:p8080", "tcp")).toBe("KUBE-SVC-2VJB64SDSIJUP5T6");
    expect(endpointChainName("ns3/svc3:p80", "tcp", "10.0.3.2:80")).toBe(
      "KUBE-SEP-DKCFIS26GWF2WLWC",
    );
    expect(portProtoHash("ns1/svc1:p80", "tcp")).toHaveLength(16);
  });

  it("every KUBE-SEP chain in 02 is the hash of its DNAT target and comment", () => {
    const rs = parseIptablesSave(readReference("02-TestOverallIPTablesRules.txt"), {
      source: "02",
    });
    let checked = 0;
    for (const c of rs.tables.get("nat")?.chains.values() ?? []) {
      if (kubeChainKind(c.name) !== "SEP") continue;
      const dnat = c.rules.find((r) => r.target?.name === "DNAT");
      const dest = dnat?.target?.options[0]?.values[0] ?? "";
      expect(endpointChainName(dnat?.comment ?? "", "tcp", dest)).toBe(c.name);
      checked++;
    }
    expect(checked).toBe(6);
  });

  it("IPv6 endpoints are bracketed; chain kinds are recognised", () => {
    expect(endpointString("fd00::1", 80)).toBe("[fd00::1]:80");
    expect(endpointString("10.0.0.1", 80)).toBe("10.0.0.1:80");
    expect(kubeChainKind("KUBE-SVC-XPGD46QRK7WJZT7O")).toBe("SVC");
    expect(kubeChainKind("KUBE-XLB-XPGD46QRK7WJZT7O")).toBe("XLB");
    expect(kubeChainKind("KUBE-SERVICES")).toBeNull();
    expect(kubeChainKind("KUBE-SVC-short")).toBeNull();
    expect(kubeChainHash("KUBE-FW-NUKIZ6OKUXPJNT4C")).toBe("NUKIZ6OKUXPJNT4C");
  });
});
