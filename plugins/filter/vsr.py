# -*- coding: utf-8 -*-
# Copyright: (c) 2026, Firebreak maintainers (@firebreak)
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or
# https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""VSR filters: thin wrappers over module_utils/vsr.py, module_utils/guard.py,
module_utils/host_reads.py and module_utils/prometheus_text.py.

Their documentation is in the sidecar files (<filter name>.yml) beside this file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible_collections.firebreak.incident.plugins.module_utils import (
    failure_modes,
    guard,
    host_reads,
    prometheus_text,
    runbook,
    vsr,
)


def vsr_leader(view, replica_order):
    """The leader of ``view``: ``replica_order[view % len(replica_order)]``."""
    try:
        return vsr.vsr_leader(view, replica_order)
    except vsr.VsrInputError as e:
        raise AnsibleFilterError("vsr_leader: %s" % e) from e


def quorum_size(n):
    """Votes needed among ``n`` replicas: ``n // 2 + 1``."""
    try:
        return vsr.quorum_size(n)
    except vsr.VsrInputError as e:
        raise AnsibleFilterError("quorum_size: %s" % e) from e


def vsr_classify(data, previous=None, disk=None, **thresholds):
    """The failure modes FM-001..FM-008 found in a vsr_metrics result."""
    try:
        return vsr.classify(
            _plain(data), previous=_plain(previous), disk=_plain(disk), **thresholds
        )
    except vsr.VsrInputError as e:
        raise AnsibleFilterError("vsr_classify: %s" % e) from e


def vsr_verdict(findings, alerts=None):
    """The finding that names the cause among ``findings`` (vsr_classify's, plus any a role
    adds), each with its runbook; with no finding, the SEV4 warnings verdict when ``alerts``
    fired, else ``{}``."""
    findings = _plain(findings)
    if not isinstance(findings, list) or not all(
        isinstance(f, dict) and "fm" in f and "severity" in f for f in findings
    ):
        raise AnsibleFilterError(
            "vsr_verdict: the input must be a list of findings ({fm, severity, ...}), got %r"
            % (findings,)
        )
    try:
        top = vsr.verdict(findings)
    except failure_modes.UnknownFailureMode as e:
        raise AnsibleFilterError("vsr_verdict: %s" % e) from e
    if top is None:
        alerts = _plain(alerts) or []
        if not isinstance(alerts, list) or not all(
            isinstance(a, dict) and "alert" in a and "replica" in a for a in alerts
        ):
            raise AnsibleFilterError(
                "vsr_verdict: alerts must be vsr_classify's alerts ({alert, replica, ...}), got %r"
                % (alerts,)
            )
        return vsr.warnings_verdict(alerts) if alerts else {}
    return dict(top, runbook=failure_modes.runbook(top["fm"]))


def failure_mode(name):
    """The registry's entry for a failure mode (``FM-003``, ``fm003_corruption``, ``3``)."""
    try:
        return failure_modes.get(_plain(name))
    except failure_modes.UnknownFailureMode as e:
        raise AnsibleFilterError("failure_mode: %s" % e) from e


def quorum_decision(
    metrics, hosts, out_of_service, max_lag=10, action="remediation", override=None
):
    """The quorum guard's decision on taking ``out_of_service`` out of service."""
    try:
        return guard.quorum_decision(
            _plain(metrics),
            _plain(hosts),
            _plain(out_of_service),
            max_lag=max_lag,
            action=action,
            override=_plain(override),
        )
    except vsr.VsrInputError as e:
        raise AnsibleFilterError("quorum_decision: %s" % e) from e


def prometheus_samples(text):
    """Exposition text -> [{name, labels, value, timestamp}]."""
    if not isinstance(text, str):
        raise AnsibleFilterError(
            "prometheus_samples: the input must be exposition text (a "
            "string), got %s" % type(text).__name__
        )
    try:
        return [prometheus_text.sample_to_dict(s) for s in prometheus_text.parse_samples(text)]
    except prometheus_text.PrometheusTextError as e:
        raise AnsibleFilterError("prometheus_samples: malformed exposition, %s" % e) from e


def vsr_host_findings(findings, table, has_quorum, service_name="kimberlite-vsr"):
    """classify's findings with what the hosts said (journal, admin status, unit state)."""
    findings, table = _plain(findings), _plain(table)
    if not isinstance(findings, list) or not isinstance(table, list):
        raise AnsibleFilterError(
            "vsr_host_findings: needs a list of findings and triage's replica table (a list)"
        )
    return vsr.host_findings(findings, table, bool(has_quorum), service_name)


def vsr_host_table(replicas, reads_by_host, patterns):
    """Triage's per-replica table: the snapshot's rows with what each host said."""
    try:
        return host_reads.host_table(_plain(replicas), _plain(reads_by_host), _plain(patterns))
    except host_reads.HostReadsError as e:
        raise AnsibleFilterError("vsr_host_table: %s" % e) from e


def runbook_plan(triage, failure_mode, options=None):
    """The runbook's plan for ``failure_mode`` from ``firebreak_triage``."""
    try:
        return runbook.plan(_plain(failure_mode), _plain(triage), _plain(options))
    except (runbook.PlanInputError, failure_modes.UnknownFailureMode) as e:
        raise AnsibleFilterError("runbook_plan: %s" % e) from e


def runbook_outcome(plan, failed=False, escalated=False, check_mode=False):
    """The incident state a run of ``plan`` leaves in the record."""
    plan = _plain(plan)
    if not isinstance(plan, dict):
        raise AnsibleFilterError("runbook_outcome: the input must be a runbook plan (a dict)")
    return runbook.outcome(plan, bool(failed), bool(escalated), bool(check_mode))


def _plain(value):
    """Templated containers (lazy dicts/lists in ansible-core 2.19) as plain ones."""
    if isinstance(value, dict):
        return dict((k, _plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class FilterModule(object):
    def filters(self):
        return {
            "vsr_leader": vsr_leader,
            "quorum_size": quorum_size,
            "vsr_classify": vsr_classify,
            "vsr_verdict": vsr_verdict,
            "failure_mode": failure_mode,
            "quorum_decision": quorum_decision,
            "prometheus_samples": prometheus_samples,
            "vsr_host_findings": vsr_host_findings,
            "vsr_host_table": vsr_host_table,
            "runbook_plan": runbook_plan,
            "runbook_outcome": runbook_outcome,
        }
