"""The Kubernetes NetworkPolicy rules (networking.k8s.io/v1), evaluated over rendered manifests.

The cluster the tests start runs the bridge CNI, which applies no NetworkPolicy; this module
answers "would a conforming CNI let this connection through?" from the policies as the chart
renders them, so that the tests can check the chart's policies connection by connection.

Endpoints are pods (namespace, labels, host network or not) or addresses outside the cluster.
As the API defines it: a pod that no policy of its namespace selects for a direction is open in
that direction; a selected pod takes what at least one selecting policy's rules allow; a
connection between two endpoints needs the egress of its source and the ingress of its
destination. ipBlock peers match addresses outside the cluster only; pods are matched by
selectors (what CNIs do for pod traffic). Host-network pods are never selected.
"""

import ipaddress
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: dict
    namespace_labels: dict = field(default_factory=dict)
    host_network: bool = False
    ports: dict = field(default_factory=dict)  # named container ports: name -> number

    def __hash__(self):
        return hash((self.namespace, tuple(sorted(self.labels.items()))))


@dataclass(frozen=True)
class Outside:
    address: str


def name(endpoint):
    """A short name for messages: the pod's component (or labels) in its namespace, or the
    address."""
    if isinstance(endpoint, Outside):
        return endpoint.address
    what = endpoint.labels.get("app.kubernetes.io/component") or ",".join(
        f"{k}={v}" for k, v in sorted(endpoint.labels.items()))
    return f"{endpoint.namespace}/{what}"


def _selects(selector, labels):
    """A LabelSelector (matchLabels, matchExpressions) against labels; {} selects all."""
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _peer_matches(peer, other, policy_namespace):
    if "ipBlock" in peer:
        if not isinstance(other, Outside):
            return False
        ip = ipaddress.ip_address(other.address)
        block = peer["ipBlock"]
        if ip not in ipaddress.ip_network(block["cidr"], strict=False):
            return False
        return not any(ip in ipaddress.ip_network(x, strict=False)
                       for x in block.get("except") or [])
    if not isinstance(other, Pod) or other.host_network:
        return False  # host-network pods are seen by their node's address
    if "namespaceSelector" in peer:
        if not _selects(peer["namespaceSelector"] or {}, other.namespace_labels):
            return False
    elif other.namespace != policy_namespace:
        return False
    if "podSelector" in peer:
        return _selects(peer["podSelector"] or {}, other.labels)
    return True


def _port_matches(rule_ports, port, protocol, target):
    if not rule_ports:
        return True
    for p in rule_ports:
        if (p.get("protocol") or "TCP") != protocol:
            continue
        want = p.get("port")
        if want is None:
            return True
        if isinstance(want, str):
            want = target.ports.get(want) if isinstance(target, Pod) else None
            if want is None:
                continue
        end = p.get("endPort", want)
        if want <= port <= end:
            return True
    return False


class Policies:
    def __init__(self, manifests, namespace):
        """`manifests`: parsed documents (dicts); the NetworkPolicies among them apply in
        `namespace` (helm template's --namespace)."""
        self.namespace = namespace
        self.policies = [m for m in manifests if m and m.get("kind") == "NetworkPolicy"]

    def _selecting(self, pod, direction):
        if not isinstance(pod, Pod) or pod.host_network or pod.namespace != self.namespace:
            return []
        out = []
        for p in self.policies:
            spec = p["spec"]
            types = spec.get("policyTypes") or (
                ["Ingress"] + (["Egress"] if "egress" in spec else []))
            if direction in types and _selects(spec.get("podSelector") or {}, pod.labels):
                out.append(spec)
        return out

    def _allowed(self, pod, other, port, protocol, direction, target):
        selecting = self._selecting(pod, direction)
        if not selecting:
            return True
        key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        for spec in selecting:
            for rule in spec.get(key) or []:
                peers = rule.get(peers_key)
                if peers and not any(_peer_matches(x, other, self.namespace) for x in peers):
                    continue
                if _port_matches(rule.get("ports"), port, protocol, target):
                    return True
        return False

    def allows(self, source, destination, port, protocol="TCP"):
        """Whether a connection from `source` to `destination`:`port` is let through."""
        return (self._allowed(source, destination, port, protocol, "Egress", destination) and
                self._allowed(destination, source, port, protocol, "Ingress", destination))
