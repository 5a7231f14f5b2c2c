"""The system under test: a Kimberlite-style VSR replica and the surface the seed gives it.

The protocol (``core``), its log (``storage``), the replica process (``replica``: API :8080,
metrics :9090), ``kimberlite-admin`` (``admin``), the host's node exporter stand-in
(``node_exporter``: :9100), the systemd units, and the seeded simulation that checks the
protocol's invariants (``sim``). It imports nothing of the harness (``firebreak.lab``).
"""
